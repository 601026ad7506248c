import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Refusal } from '../../src/gate/syslog.js';
import { cap, MAX_DATAGRAM_BYTES, MAX_FIELD_CHARS, syslogDatagram } from '../../src/gate/syslog.js';

const NOW = new Date(2026, 4, 4, 9, 5, 7);
const message = (datagram: string) => JSON.parse(datagram.replace(/^<36>May  4 09:05:07 orchesjob-reserver-gate\[42\]: /, '')) as Record<string, unknown>;
const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

describe('the audit line', () => {
  it('names the key, verb, run key, reason, and the length and hash of the whole command line', () => {
    const refusal: Refusal = { key: 'k', verb: 'run', runKey: null, reason: 'the verb "run" is not allowed', command: 'orchesjob-reserver run é' };
    const datagram = syslogDatagram(refusal, NOW, 42);
    expect(datagram).toMatch(/^<36>May  4 09:05:07 orchesjob-reserver-gate\[42\]: \{/);
    expect(message(datagram)).toEqual({
      event: 'gate_refused',
      key: 'k',
      verb: 'run',
      run_key: null,
      reason: 'the verb "run" is not allowed',
      command_bytes: 25,
      command_sha256: sha256('orchesjob-reserver run é'),
    });
    expect(datagram).toMatch(/^[\x20-\x7e]*$/); // é is \u00e9
  });

  it('caps every field and stays printable ASCII under 2 KiB, whatever the client sent', () => {
    const verb = 'v'.repeat(110_000);
    const controls = '\x01'.repeat(24_000);
    const emoji = '😀'.repeat(5000);
    const command = `orchesjob-reserver ${verb} '${controls}'`;
    const refusal: Refusal = { key: emoji, verb, runKey: controls, reason: `the verb ${JSON.stringify(verb)} is not allowed\n${emoji}`, command };
    const datagram = syslogDatagram(refusal, NOW, 42);
    expect(Buffer.byteLength(datagram)).toBeLessThan(MAX_DATAGRAM_BYTES);
    expect(datagram).toMatch(/^[\x20-\x7e]*$/);
    const m = message(datagram);
    expect(m['verb']).toMatch(/^v+…\(\+\d+ chars\)$/);
    expect(m['run_key']).toMatch(/^\x01+…\(\+\d+ chars\)$/);
    expect(m['key']).toMatch(/^(😀)+…\(\+\d+ chars\)$/);
    expect(m).toMatchObject({ command_bytes: Buffer.byteLength(command), command_sha256: sha256(command) });
    const verbKept = (m['verb'] as string).indexOf('…');
    expect(Number(/\+(\d+)/.exec(m['verb'] as string)?.[1]) + verbKept).toBe(110_000);
  });

  it('the minimal line: key, verb, "refused" and the hash', () => {
    const refusal: Refusal = { key: 'k', verb: 'x'.repeat(1000), runKey: 'r', reason: 'why', command: 'c' };
    const m = message(syslogDatagram(refusal, NOW, 42, true));
    expect(Object.keys(m).sort()).toEqual(['command_sha256', 'event', 'key', 'reason', 'verb']);
    expect(m).toMatchObject({ key: 'k', reason: 'refused', command_sha256: sha256('c') });
  });

  it('cap: short text unchanged, null stays null, escapes counted', () => {
    expect(cap('abc')).toBe('abc');
    expect(cap(null)).toBeNull();
    expect(cap('a'.repeat(MAX_FIELD_CHARS))).toBe('a'.repeat(MAX_FIELD_CHARS));
    expect(cap('a'.repeat(MAX_FIELD_CHARS + 1))).toMatch(/^a+…\(\+\d+ chars\)$/);
    expect(cap('"'.repeat(200))).toMatch(/^"+…\(\+\d+ chars\)$/); // 400 escaped
  });
});
