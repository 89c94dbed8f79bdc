// The SDK-free ranged GET: its SigV4 signature against the worked example in AWS's S3 documentation
// (GET /test.txt, Range bytes=0-9), and which options it accepts. Reads against s3rver are covered by
// the replica suites in test/ (every replica page is read through it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Signer, rangeReaderSupports } from './range-get.js';

test('the signature of a ranged GET matches the AWS documentation example', () => {
  const signer = new Signer({ accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' }, 'us-east-1');
  const h = signer.sign({ host: 'examplebucket.s3.amazonaws.com', path: '/test.txt', range: 'bytes=0-9', now: new Date('2013-05-24T00:00:00Z') });
  assert.equal(h['x-amz-date'], '20130524T000000Z');
  assert.equal(
    h.authorization,
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
  );
});

test('a session token is a signed header', () => {
  const signer = new Signer({ accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', sessionToken: 'token' }, 'us-east-1');
  const h = signer.sign({ host: 'examplebucket.s3.amazonaws.com', path: '/test.txt', range: 'bytes=0-9', now: new Date('2013-05-24T00:00:00Z') });
  assert.equal(h['x-amz-security-token'], 'token');
  assert.match(h.authorization ?? '', /SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token,/);
});

const ENV = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'AWS_REGION', 'AWS_DEFAULT_REGION'];
function withEnv(values: Record<string, string>, fn: () => void): void {
  const saved = new Map(ENV.map((k) => [k, process.env[k]]));
  for (const k of ENV) delete process.env[k];
  Object.assign(process.env, values);
  try {
    fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test('only static credentials with an endpoint or a region are served without the SDK', () => withEnv({}, () => {
  const credentials = { accessKeyId: 'a', secretAccessKey: 'b' };
  assert.equal(rangeReaderSupports({ bucket: 'b', endpoint: 'http://127.0.0.1:9000', credentials }), true);
  assert.equal(rangeReaderSupports({ bucket: 'b', region: 'eu-west-1', credentials }), true);
  assert.equal(rangeReaderSupports({ bucket: 'b', credentials }), false);
  assert.equal(rangeReaderSupports({ bucket: 'b', endpoint: 'http://127.0.0.1:9000' }), false);
  assert.equal(rangeReaderSupports({ bucket: 'b', endpoint: 'http://user:pw@127.0.0.1:9000', credentials }), false);
  assert.equal(rangeReaderSupports({ bucket: 'b', endpoint: 'ftp://127.0.0.1', credentials }), false);
}));

test('credentials, endpoint and region from the environment, as the SDK reads them first', () => {
  withEnv({ AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b', AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9000' }, () => assert.equal(rangeReaderSupports({ bucket: 'b' }), true));
  withEnv({ AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b', AWS_REGION: 'eu-west-1' }, () => assert.equal(rangeReaderSupports({ bucket: 'b' }), true));
  withEnv({ AWS_ACCESS_KEY_ID: 'a', AWS_ENDPOINT_URL: 'http://127.0.0.1:9000' }, () => assert.equal(rangeReaderSupports({ bucket: 'b' }), false));
});
