import { createHash } from 'node:crypto';
import { StackbackError } from '../errors.ts';
import { type KeyFileContent, parseKeyFile } from './key-file.ts';

/**
 * The key file as text a person can keep (`stackback key export` / `key import`): printed on
 * paper or pasted into a password manager. Base32 (no look-alike letters to mistype, case
 * does not matter), in groups of five; every line ends with a check of its own, so a typo is
 * found on its line, and the whole carries a checksum.
 *
 *   stackback repository key (repository <id>, key <key id>) …
 *   BEGIN STACKBACK KEY
 *   AB3DE FGHIJ … 1f2e
 *   …
 *   END STACKBACK KEY 9a8b7c6d5e4f3a2b
 */
const BEGIN = 'BEGIN STACKBACK KEY';
const END = 'END STACKBACK KEY';
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const GROUPS_PER_LINE = 8;
const GROUP = 5;

function base32(data: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function fromBase32(text: string): Buffer {
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (const char of text) {
    const digit = ALPHABET.indexOf(char);
    if (digit < 0) throw importError(`the key has the character ${JSON.stringify(char)}, which is not in its alphabet`);
    value = ((value << 5) | digit) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(bytes);
}

const digest = (text: string) => createHash('sha256').update(text).digest('hex');
const lineCheck = (index: number, body: string) => digest(`${index}:${body}`).slice(0, 4);

function importError(message: string): StackbackError {
  return new StackbackError('KEY_INVALID', message, 'compare the text with your copy of the key: each line ends with a check of its own');
}

export function keyToText(content: KeyFileContent, repositoryId: string): string {
  const encoded = base32(Buffer.from(JSON.stringify(content), 'utf8'));
  const perLine = GROUPS_PER_LINE * GROUP;
  const lines: string[] = [];
  for (let at = 0, index = 1; at < encoded.length; at += perLine, index++) {
    const body = encoded.slice(at, at + perLine);
    const groups = body.match(new RegExp(`.{1,${GROUP}}`, 'g'))!.join(' ');
    lines.push(`${groups.padEnd(GROUPS_PER_LINE * (GROUP + 1) - 1)}  ${lineCheck(index, body)}`);
  }
  return [
    `stackback repository key — repository ${repositoryId}, key ${content.key_id}`,
    content.secret !== undefined ? 'This text IS the key: whoever has it can read every backup. Keep it away from this server.' : 'The key, wrapped: it opens with one of its passphrases. Keep it (and the passphrase) away from this server.',
    'Restore it with `stackback key import`.',
    BEGIN,
    ...lines,
    `${END} ${digest(encoded).slice(0, 16)}`,
    '',
  ].join('\n');
}

/** The key file content in an exported text; errors name the line that is wrong. */
export function keyFromText(text: string): KeyFileContent {
  const all = text.split(/\r?\n/).map((l) => l.trim());
  const start = all.findIndex((l) => l.toUpperCase() === BEGIN);
  const stop = all.findIndex((l) => l.toUpperCase().startsWith(END));
  if (start < 0 || stop < start) throw importError(`no "${BEGIN}" … "${END}" block found`);
  let encoded = '';
  all.slice(start + 1, stop).filter((l) => l !== '').forEach((line, i) => {
    const parts = line.toUpperCase().split(/\s+/);
    const check = parts.pop()!.toLowerCase();
    const body = parts.join('');
    if (lineCheck(i + 1, body) !== check) throw importError(`line ${i + 1} of the key does not match its check ${check}: a character is wrong or missing`);
    encoded += body;
  });
  const total = all[stop]!.slice(END.length).trim().toLowerCase();
  if (digest(encoded).slice(0, 16) !== total) throw importError('the key\'s lines are each right but their whole does not match the checksum: a line is missing or out of order');
  return parseKeyFile(fromBase32(encoded).toString('utf8'), 'the imported text');
}
