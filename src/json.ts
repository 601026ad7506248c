/**
 * JSON as the Python tool wrote it (`json.dumps(..., sort_keys=True, ensure_ascii=False)`): keys in
 * code-point order at every depth, non-ASCII text unescaped.
 *
 * `JSON.stringify` cannot do this by sorting keys first: a JavaScript object always lists
 * integer-like keys ("9", "10") before the others, in numeric order, whatever order they were added.
 */
export function stringifySorted(value: unknown, indent = 0): string {
  return write(value, indent, '');
}

function write(value: unknown, indent: number, pad: string): string {
  if (value === null || typeof value !== 'object') {
    // Like JSON.stringify, undefined inside arrays becomes null.
    return JSON.stringify(value) ?? 'null';
  }
  const inner = indent > 0 ? pad + ' '.repeat(indent) : '';
  const open = indent > 0 ? `\n${inner}` : '';
  const sep = indent > 0 ? `,\n${inner}` : ',';
  const close = indent > 0 ? `\n${pad}` : '';
  const colon = indent > 0 ? ': ' : ':';
  const withToJson = value as { toJSON?: () => unknown };
  if (typeof withToJson.toJSON === 'function') return write(withToJson.toJSON(), indent, pad);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[${open}${value.map((v) => write(v, indent, inner)).join(sep)}${close}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((k) => record[k] !== undefined && typeof record[k] !== 'function')
    .sort(compareCodePoints);
  if (keys.length === 0) return '{}';
  return `{${open}${keys.map((k) => `${JSON.stringify(k)}${colon}${write(record[k], indent, inner)}`).join(sep)}${close}}`;
}

/** Order strings by Unicode code point (Python's string order), not by UTF-16 code unit. */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return ca.done === cb.done ? 0 : ca.done ? -1 : 1;
    const diff = (ca.value.codePointAt(0) as number) - (cb.value.codePointAt(0) as number);
    if (diff !== 0) return diff;
  }
}
