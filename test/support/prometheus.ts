/**
 * Helpers for the monitoring tests (`test/e2e/metrics.e2e.test.ts`, `test/e2e/monitoring-deploy.e2e.test.ts`):
 * Debian's `promtool` (package prometheus) and a private node_exporter (package
 * prometheus-node-exporter) on 127.0.0.1 and a free port, with only its textfile collector, reading a
 * folder of the test's. Processes go through `spawnTracked` (test/support/rsyslog.ts), whose afterEach
 * fails a test that leaves one running.
 */
import { spawnSync } from 'node:child_process';
import type { Tracked } from './rsyslog.js';
import { findExecutable, freePort, spawnTracked, waitForListener } from './rsyslog.js';

export const PROMTOOL: string | null = findExecutable('promtool', ['/usr/bin']);
export const NODE_EXPORTER: string | null =
  findExecutable('prometheus-node-exporter', ['/usr/bin']) ?? findExecutable('node_exporter', ['/usr/bin', '/usr/local/bin']);

/** Under CI=true a missing program fails the file instead of skipping it (.ci/run installs them). */
export function requireUnderCi(programs: Record<string, string | null>, packages: string): void {
  const missing = Object.entries(programs).filter(([, path]) => path === null).map(([name]) => name);
  if (missing.length > 0 && process.env['CI'] === 'true') {
    throw new Error(`CI=true: ${missing.join(', ')} missing (.ci/run installs Debian's ${packages})`);
  }
}

export interface NodeExporter extends Tracked {
  readonly port: number;
  /** GET /metrics: the whole exposition, as Prometheus would scrape it. */
  scrape(): Promise<string>;
}

/** node_exporter on 127.0.0.1:<free port>, every collector off but the textfile one, reading `textfileDir`. */
export async function startNodeExporter(textfileDir: string): Promise<NodeExporter> {
  if (NODE_EXPORTER === null) throw new Error('node_exporter is not installed');
  const port = await freePort();
  const args = [
    `--web.listen-address=127.0.0.1:${port}`,
    '--collector.disable-defaults',
    '--collector.textfile',
    `--collector.textfile.directory=${textfileDir}`,
    '--web.disable-exporter-metrics',
  ];
  const exporter = spawnTracked(NODE_EXPORTER, args, {});
  await waitForListener(port);
  return {
    ...exporter,
    port,
    async scrape() {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      if (!response.ok) throw new Error(`node_exporter answered ${response.status}: ${await response.text()}`);
      return response.text();
    },
  };
}

/** `promtool check metrics` on `text` (its stdin): its exit code and what it says (nothing when content). */
export function checkMetrics(text: string): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL as string, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** The samples of an exposition by series (name and labels as written), without comments. */
export function samples(text: string): Record<string, number> {
  const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  return Object.fromEntries(lines.map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
}
