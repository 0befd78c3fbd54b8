import { readFileSync } from 'node:fs';

/**
 * This host's users and groups, read from /etc/passwd- and /etc/group-style files
 * (name:x:id:…): owners recorded and restored by name, the user to name in a hint, the
 * group of a control socket. An unreadable file reads as empty.
 */
function entries(file: string): [name: string, id: number][] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').flatMap((line) => {
    const [name, , id] = line.split(':');
    return name && id && /^\d+$/.test(id) ? [[name, Number(id)] as [string, number]] : [];
  });
}

/** id → name (the first name listed for an id). */
export function idNames(file: string): Map<number, string> {
  const names = new Map<number, string>();
  for (const [name, id] of entries(file)) if (!names.has(id)) names.set(id, name);
  return names;
}

/** name → id (the first line for a name). */
export function nameIds(file: string): Map<string, number> {
  const ids = new Map<string, number>();
  for (const [name, id] of entries(file)) if (!ids.has(name)) ids.set(name, id);
  return ids;
}
