import { StackbackError } from '../../errors.ts';
import { readPrivateText } from '../../secret-file-read.ts';

/**
 * The access key of a remote (remotes[].credentials_file), in the AWS shared-credentials
 * format that `aws configure` writes, so an existing file works as it is:
 *
 *   # offsite bucket, key made 2025-03-01
 *   [default]
 *   aws_access_key_id = AKIAIOSFODNN7EXAMPLE
 *   aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
 *   aws_session_token = …            (optional: temporary credentials)
 *
 * - One profile per file. [section] headers are allowed and ignored; a key given twice
 *   (under two headers, say) must have the same value both times, else the file is refused:
 *   picking one of several accounts silently would copy the backups to the wrong one.
 * - `key = value` (or `key: value`); key names are case-insensitive; spaces around both are
 *   trimmed; one pair of matching quotes around a value is taken off. Lines starting with
 *   '#' or ';' are comments; there are no comments after a value (a value holding spaces is
 *   refused, which catches `key = value  # note`). Other keys (region, output …) are ignored.
 * - Like every secret file: refused if it grants any access to others (mode 0600, or 0640
 *   root:stackback).
 *
 * Errors (code SECRET_FILE) name the remote, the file, the key and the line number — never
 * a value, nor any text of a line that could not be parsed (it may be a pasted secret).
 */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

type FileKey = 'aws_access_key_id' | 'aws_secret_access_key' | 'aws_session_token';
const KEYS: ReadonlySet<string> = new Set<FileKey>(['aws_access_key_id', 'aws_secret_access_key', 'aws_session_token']);

const FORMAT_HINT = 'the file holds `aws_access_key_id = …` and `aws_secret_access_key = …` lines (AWS shared-credentials format, one profile), mode 0600';

/** Reads an S3 credentials file: the AWS shared-credentials format, one profile ([section] headers optional and ignored, '#' and ';' comments), keys aws_access_key_id, aws_secret_access_key, optional aws_session_token. */
export function readS3Credentials(file: string, remoteName: string): S3Credentials {
  const where = `credentials_file ${file} of remote ${remoteName}`;
  const invalid = (what: string) => new StackbackError('SECRET_FILE', `${where} ${what}`, FORMAT_HINT);
  const text = readPrivateText(file, where);

  const found = new Map<FileKey, { value: string; line: number }>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (const [index, rawLine] of lines.entries()) {
    const lineNo = index + 1;
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (/^\[[^\]]*\]$/.test(line)) continue;
    const separator = line.search(/[=:]/);
    const name = separator > 0 ? line.slice(0, separator).trim().toLowerCase() : '';
    if (!/^[a-z0-9_]+$/.test(name)) throw invalid(`line ${lineNo}: not a \`key = value\` line, a [section] header or a comment`);
    if (!KEYS.has(name)) continue;
    const key = name as FileKey;
    let value = line.slice(separator + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) value = value.slice(1, -1);
    if (value === '') throw invalid(`line ${lineNo}: ${key} is empty`);
    if (/[\s\p{Cc}]/u.test(value)) throw invalid(`line ${lineNo}: the value of ${key} holds spaces or control characters (comments after a value are not supported)`);
    const earlier = found.get(key);
    if (earlier && earlier.value !== value) {
      throw invalid(`gives ${key} twice with different values (lines ${earlier.line} and ${lineNo}): it must hold one profile (keep one [section])`);
    }
    if (!earlier) found.set(key, { value, line: lineNo });
  }

  const missing = (['aws_access_key_id', 'aws_secret_access_key'] as const).filter((key) => !found.has(key));
  if (missing.length > 0) throw invalid(`has no ${missing.join(' and no ')}`);
  const credentials: S3Credentials = { accessKeyId: found.get('aws_access_key_id')!.value, secretAccessKey: found.get('aws_secret_access_key')!.value };
  const token = found.get('aws_session_token');
  if (token) credentials.sessionToken = token.value;
  return credentials;
}
