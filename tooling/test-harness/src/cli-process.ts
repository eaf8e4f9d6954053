/** Command-line programs under test: run a TypeScript entry point as its own process, and check what it printed. */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { expect } from 'vitest';

export interface ProcessRun {
  code: number;
  stdout: string;
  stderr: string;
}

const tsx = createRequire(import.meta.url).resolve('tsx');

/** Runs `file` (a path) with Node.js and tsx, workspace packages resolved to their sources; never throws. */
export function runTypeScript(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<ProcessRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=@fstore/source', '--import', tsx, file, ...args],
      { env },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
    );
  });
}

/** Exactly one line on stderr, matching `pattern`, with no stack frame and none of the secrets anywhere. */
export function expectOneLine(run: ProcessRun, code: number, pattern: RegExp, secrets: string[]): void {
  expect(run.code, run.stderr).toBe(code);
  expect(run.stderr).toMatch(/^[^\n]+\n$/);
  expect(run.stderr).toMatch(pattern);
  expect(run.stderr).not.toMatch(/^\s+at /m);
  for (const secret of secrets) expect(run.stdout + run.stderr).not.toContain(secret);
}
