// S3 credentials files (remotes[].credentials_file): the AWS shared-credentials format, refused when
// others may read it, and no error ever quotes a secret. Also the shared secret-file reader behind
// it, the password/API-key files and the repository key file.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { StackbackError } from '../src/errors.ts';
import { readKeyFile } from '../src/repository/key-file.ts';
import { readS3Credentials } from '../src/repository/storage/s3-credentials.ts';
import { secretFromFile } from '../src/sources/secret-file.ts';

const ACCESS = 'AKIAIOSFODNN7EXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const TOKEN = 'FwoGZXIvYXdzEXAMPLETOKEN+abc/def==';

const folder = mkdtempSync(join(tmpdir(), 'stackback-s3cred-'));
after(() => rmSync(folder, { recursive: true, force: true }));

let counter = 0;
function credentialsFile(text: string, mode = 0o600): string {
  const file = join(folder, `s3-${++counter}.credentials`);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

/** The error readS3Credentials throws; it must be SECRET_FILE and name the remote and the file. */
function refusal(file: string): StackbackError {
  try {
    readS3Credentials(file, 'offsite');
  } catch (error) {
    assert.ok(error instanceof StackbackError, String(error));
    assert.equal(error.code, 'SECRET_FILE');
    assert.ok(error.message.includes(`credentials_file ${file} of remote offsite`), error.message);
    return error;
  }
  assert.fail('the file was accepted');
}

/** No part of any secret in the message, the hint, or anything String() or the stack shows. */
function assertNoSecret(error: StackbackError, secrets: string[] = [ACCESS, SECRET, TOKEN]): void {
  const shown = [error.message, error.hint ?? '', String(error), error.stack ?? '', JSON.stringify(error)].join('\n');
  for (const secret of secrets) {
    for (const piece of [secret, secret.slice(0, 8), secret.slice(-8)]) assert.ok(!shown.includes(piece), `"${piece}" appears in: ${shown}`);
  }
}

describe('S3 credentials file', () => {
  test('the file `aws configure` writes: [default] profile, comments, spaces around =', () => {
    const file = credentialsFile(`# offsite bucket\n; made 2025-03-01\n[default]\naws_access_key_id = ${ACCESS}\naws_secret_access_key = ${SECRET}\n`);
    assert.deepEqual(readS3Credentials(file, 'offsite'), { accessKeyId: ACCESS, secretAccessKey: SECRET });
  });

  test('no section header, CRLF line ends, a BOM, indentation, upper-case key names, quotes, ":" and a session token', () => {
    const file = credentialsFile(`\uFEFF  AWS_ACCESS_KEY_ID=${ACCESS}\r\n\r\n\taws_secret_access_key: "${SECRET}"\r\naws_session_token = '${TOKEN}'\r\nregion = eu-central-1\r\n`);
    assert.deepEqual(readS3Credentials(file, 'offsite'), { accessKeyId: ACCESS, secretAccessKey: SECRET, sessionToken: TOKEN });
  });

  test('a secret holding "=" or ":" keeps them; group read is allowed (0640)', () => {
    const secret = 'abc=def:ghi==';
    const file = credentialsFile(`aws_access_key_id=${ACCESS}\naws_secret_access_key=${secret}\n`, 0o640);
    assert.equal(readS3Credentials(file, 'offsite').secretAccessKey, secret);
  });

  test('several profiles: the same keys again are fine, different ones are refused', () => {
    const keys = `aws_access_key_id = ${ACCESS}\naws_secret_access_key = ${SECRET}\n`;
    assert.deepEqual(readS3Credentials(credentialsFile(`[default]\n${keys}[offsite]\n${keys}`), 'offsite'), { accessKeyId: ACCESS, secretAccessKey: SECRET });
    const other = 'AKIAOTHERACCOUNT0000';
    const error = refusal(credentialsFile(`[default]\n${keys}\n[other]\naws_access_key_id = ${other}\naws_secret_access_key = ${SECRET}\n`));
    assert.match(error.message, /gives aws_access_key_id twice with different values \(lines 2 and 6\): it must hold one profile/);
    assertNoSecret(error, [ACCESS, SECRET, other]);
  });

  test('a file others may access is refused with its mode, before it is read', () => {
    for (const mode of [0o644, 0o604, 0o602, 0o601, 0o666]) {
      const file = credentialsFile(`aws_access_key_id = ${ACCESS}\naws_secret_access_key = ${SECRET}\n`, mode);
      const error = refusal(file);
      assert.equal(error.message, `credentials_file ${file} of remote offsite is accessible to others (mode ${mode.toString(8).padStart(4, '0')}): refusing to use it`);
      assert.match(error.hint!, /chmod o-rwx/);
      assertNoSecret(error);
    }
  });

  test('a missing file, or a folder, cannot be read: the system\'s code is named', () => {
    assert.equal(refusal(join(folder, 'absent')).message, `cannot read credentials_file ${join(folder, 'absent')} of remote offsite: ENOENT`);
    const sub = mkdtempSync(join(folder, 'dir-'));
    chmodSync(sub, 0o700);
    assert.equal(refusal(sub).message, `cannot read credentials_file ${sub} of remote offsite: EISDIR`);
  });

  test('a symbolic link is followed (secret mounts are links), and the mode checked is the target\'s', () => {
    const target = credentialsFile(`aws_access_key_id = ${ACCESS}\naws_secret_access_key = ${SECRET}\n`);
    const link = join(folder, 'link.credentials');
    symlinkSync(target, link);
    assert.equal(readS3Credentials(link, 'offsite').accessKeyId, ACCESS);
    chmodSync(target, 0o644);
    assert.match(refusal(link).message, /accessible to others \(mode 0644\)/);
  });

  test('missing keys are named', () => {
    assert.match(refusal(credentialsFile('')).message, /has no aws_access_key_id and no aws_secret_access_key$/);
    assert.match(refusal(credentialsFile('[default]\n# nothing yet\n')).message, /has no aws_access_key_id and no aws_secret_access_key$/);
    const onlyId = refusal(credentialsFile(`aws_access_key_id = ${ACCESS}\naws_session_token = ${TOKEN}\n`));
    assert.match(onlyId.message, /has no aws_secret_access_key$/);
    assertNoSecret(onlyId);
    const onlySecret = refusal(credentialsFile(`aws_secret_access_key = ${SECRET}\n`));
    assert.match(onlySecret.message, /has no aws_access_key_id$/);
    assertNoSecret(onlySecret);
    // A misspelt key is another key: ignored, so the real one is missing (the misspelling is not echoed either).
    assert.match(refusal(credentialsFile(`aws_access_key_id = ${ACCESS}\naws_secret_acces_key = ${SECRET}\n`)).message, /has no aws_secret_access_key$/);
  });

  test('malformed lines are named by number, never by their text', () => {
    const cases: [string, RegExp][] = [
      // the secret pasted on a line of its own (it holds "/" and "=", so it even looks like key=value)
      [`aws_access_key_id = ${ACCESS}\n${SECRET}\n`, /line 2: not a `key = value` line, a \[section\] header or a comment$/],
      [`aws_access_key_id = ${ACCESS}\nsecret ${SECRET}\n`, /line 2: not a `key = value` line/],
      [`aws_access_key_id = ${ACCESS}\n= ${SECRET}\n`, /line 2: not a `key = value` line/],
      [`[default\naws_access_key_id = ${ACCESS}\n`, /line 1: not a `key = value` line/],
      [`${ACCESS} = ${SECRET}\n`, /has no aws_access_key_id and no aws_secret_access_key$/],
      [`aws_access_key_id = ${ACCESS}\naws_secret_access_key = ${SECRET}  # prod account\n`, /line 2: the value of aws_secret_access_key holds spaces or control characters \(comments after a value are not supported\)$/],
      [`aws_access_key_id = ${ACCESS}\naws_secret_access_key = ${SECRET.slice(0, 10)}\u0007${SECRET.slice(10)}\n`, /line 2: the value of aws_secret_access_key holds spaces or control characters/],
      [`aws_access_key_id = \naws_secret_access_key = ${SECRET}\n`, /line 1: aws_access_key_id is empty$/],
      [`aws_access_key_id = ""\naws_secret_access_key = ${SECRET}\n`, /line 1: aws_access_key_id is empty$/],
      [`aws_access_key_id: ${ACCESS}\naws_secret_access_key = ${SECRET}\naws_session_token = ${TOKEN} ${TOKEN}\n`, /line 3: the value of aws_session_token holds spaces/],
      [`aws_access_key_id = ${ACCESS}\naws_secret_access_key = ${SECRET}\naws_secret_access_key = ${SECRET}x\n`, /gives aws_secret_access_key twice with different values \(lines 2 and 3\)/],
    ];
    for (const [text, expected] of cases) {
      const error = refusal(credentialsFile(text));
      assert.match(error.message, expected, text);
      assert.match(error.hint!, /`aws_access_key_id = …` and `aws_secret_access_key = …` lines/);
      assertNoSecret(error, [ACCESS, SECRET, TOKEN, `${SECRET}x`]);
    }
  });
});

describe('the shared secret-file reader (password_file, api_key_file, repository key file)', () => {
  test('password and API-key files: first line; o+r refused, g+r allowed; cannot-read names the code', () => {
    const file = credentialsFile('s3cr3t-pass\nsecond line\n', 0o640);
    assert.equal(secretFromFile(file, 'password_file', 'main')(), 's3cr3t-pass');
    chmodSync(file, 0o644);
    assert.throws(() => secretFromFile(file, 'password_file', 'main')(), (error: unknown) => {
      assert.ok(error instanceof StackbackError && error.code === 'SECRET_FILE');
      assert.equal(error.message, `password_file ${file} of source main is accessible to others (mode 0644): refusing to use it`);
      assert.ok(!error.message.includes('s3cr3t'));
      return true;
    });
    assert.throws(() => secretFromFile(join(folder, 'nope'), 'api_key_file', 'vectors')(), { code: 'SECRET_FILE', message: `cannot read api_key_file ${join(folder, 'nope')} of source vectors: ENOENT` });
    assert.equal(secretFromFile(null, 'password_file', 'main')(), undefined);
  });

  test('the repository key file: group access refused too, a symbolic link refused, a missing file is KEY_MISSING', () => {
    const key = credentialsFile('{"stackback_key":1}', 0o640);
    assert.throws(() => readKeyFile(key), { code: 'KEY_INVALID', message: `key file ${key} is readable by others than its owner (mode 0640): refusing to use it` });
    chmodSync(key, 0o600);
    assert.throws(() => readKeyFile(key), { code: 'KEY_INVALID', message: `key file ${key} is not a valid stackback key: bad key_id` });
    const link = join(folder, 'key-link');
    symlinkSync(key, link);
    assert.throws(() => readKeyFile(link), { code: 'KEY_INVALID', message: `cannot read key file ${link}: ELOOP` });
    assert.throws(() => readKeyFile(join(folder, 'no-key')), { code: 'KEY_MISSING' });
  });
});
