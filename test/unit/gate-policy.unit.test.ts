import { describe, expect, it } from 'vitest';
import type { KeyPolicy } from '../../src/gate/policy.js';
import { commandAllowed, keyPolicy, metadataBytes, parsePolicy, PolicyError, reservationRefusal } from '../../src/gate/policy.js';
import { stringifySorted } from '../../src/json.js';

const EXAMPLE = `
db = "/var/lib/orchesjob/reserver.sqlite3"
[keys.airflow-prod]
verbs = ["reserve", "status", "result", "cancel", "list", "history", "orchesjob status"]
run_key_prefix = "prod/"
commands = ["/jobs/import.sh", "/opt/jobs/"]
start_options = ["--strict"]
max_metadata_bytes = 4096
`;

function problem(text: string): string {
  try {
    parsePolicy(text, '/p.toml');
  } catch (error) {
    if (error instanceof PolicyError) return error.message;
    throw error;
  }
  throw new Error('accepted');
}

describe('parsePolicy', () => {
  it('reads the example of issue 15, and defaults what is left out', () => {
    const policy = parsePolicy(EXAMPLE, '/p.toml');
    expect(policy.db).toBe('/var/lib/orchesjob/reserver.sqlite3');
    const key = keyPolicy(policy, 'airflow-prod');
    expect([...key.verbs]).toHaveLength(7);
    expect(key).toMatchObject({ runKeyPrefix: 'prod/', commands: ['/jobs/import.sh', '/opt/jobs/'], startOptions: ['--strict'], maxMetadataBytes: 4096 });
    const bare = keyPolicy(parsePolicy('[keys.k]\nverbs = ["list"]\n', '/p.toml'), 'k');
    expect(bare).toMatchObject({ runKeyPrefix: '', commands: [], startOptions: [], maxMetadataBytes: 65536 });
    expect(parsePolicy('[keys.k]\nverbs = ["list"]\n', '/p.toml').db).toBeNull();
  });

  it('says what is wrong and where', () => {
    expect(problem('[keys.k]\nverbs = ["list"]\nverb = 1\n')).toMatchInlineSnapshot(
      `"policy /p.toml: keys.k: unknown field "verb" (known: verbs, run_key_prefix, commands, start_options, max_metadata_bytes)"`,
    );
    expect(problem('[keys.k]\nverbs = ["list", "lsit"]\n')).toContain('keys.k.verbs[1]: unknown verb "lsit"');
    expect(problem('[keys.k]\nverbs = ["run"]\n')).toContain('keys.k.verbs[0]: "run" can never be granted through the gate');
    for (const verb of ['clean', 'replay', 'gate', 'events', 'metrics']) expect(problem(`[keys.k]\nverbs = ["${verb}"]\n`)).toContain('can never be granted');
    expect(problem('[keys.k]\n')).toContain('keys.k.verbs: missing');
    expect(problem('dbx = "/x"\n[keys.k]\nverbs = []\n')).toContain('(top level): unknown field "dbx"');
    expect(problem('db = "relative"\n[keys.k]\nverbs = []\n')).toContain('db: must be an absolute path');
    expect(problem('db = "/x"\n')).toContain('keys: no [keys.NAME] table');
    expect(problem('[keys.k]\nverbs = ["reserve"]\ncommands = ["jobs/x"]\n')).toContain('keys.k.commands[0]: "jobs/x" is not a normalized absolute path');
    expect(problem('[keys.k]\nverbs = ["reserve"]\ncommands = ["/opt/../bin/"]\n')).toContain('not a normalized absolute path');
    expect(problem('[keys.k]\nverbs = []\nmax_metadata_bytes = 70000\n')).toContain('keys.k.max_metadata_bytes: must be a whole number from 0 to 65536');
    expect(problem('[keys.k]\nverbs = "list"\n')).toContain('keys.k.verbs: must be an array of strings');
    expect(problem('[keys.k\nverbs = []\n')).toMatch(/^policy \/p\.toml is not valid TOML: .*\n.*1:/s);
    expect(() => keyPolicy(parsePolicy(EXAMPLE, '/p.toml'), 'other')).toThrow('policy /p.toml has no [keys.other] table');
  });
});

describe('commandAllowed', () => {
  const commands = ['/jobs/import.sh', '/opt/jobs/'];
  it.each([
    ['/jobs/import.sh', true],
    ['/opt/jobs/x.sh', true],
    ['/jobs/import.sh2', false],
    ['/jobs/import', false],
    ['jobs/import.sh', false],
    ['/opt/jobs/', false],
    ['/opt/jobs/sub/x.sh', false],
    ['/opt/jobs/..', false],
    ['/opt/jobs/../../bin/sh', false],
    ['/opt/jobsx/y', false],
    ['/bin/sh', false],
  ])('%s: %s', (argv0, allowed) => {
    expect(commandAllowed(commands, argv0)).toBe(allowed);
  });
});

describe('reservationRefusal', () => {
  const key: KeyPolicy = keyPolicy(parsePolicy(EXAMPLE, '/p.toml'), 'airflow-prod');
  const ask = { runKey: 'prod/a', command: ['/jobs/import.sh', 'x'], orchesjobStartOptions: ['--strict'], metadata: { s: 'x'.repeat(4088) } };
  it('allows what the policy grants, and names the first thing it does not', () => {
    expect(reservationRefusal(key, ask)).toBeNull();
    expect(reservationRefusal(key, { ...ask, runKey: 'dev/a' })).toBe('run key "dev/a" is outside this key\'s prefix "prod/"');
    expect(reservationRefusal(key, { ...ask, command: ['/bin/sh'] })).toBe('command "/bin/sh" is not allowed for this key');
    expect(reservationRefusal(key, { ...ask, orchesjobStartOptions: ['--bypass'] })).toBe('start option "--bypass" is not allowed for this key');
    expect(reservationRefusal(key, { ...ask, metadata: { s: 'x'.repeat(4089) } })).toBe("metadata of 4097 bytes is over this key's limit of 4096");
    expect(reservationRefusal({ ...key, verbs: new Set(['list']) }, ask)).toBe('this key may not reserve');
  });
});

describe('metadataBytes', () => {
  it('measures the canonical JSON the ledger stores, not the text as typed', () => {
    const typed = '{"b": [1e20, 1E+20],  "a": "é"}';
    const parsed = JSON.parse(typed) as Record<string, unknown>;
    expect(metadataBytes(parsed)).toBe(Buffer.byteLength('{"a":"é","b":[100000000000000000000,100000000000000000000]}', 'utf8'));
    expect(metadataBytes(JSON.parse(stringifySorted(parsed)) as Record<string, unknown>)).toBe(metadataBytes(parsed));
    expect(metadataBytes(null)).toBe(0);
  });
});
