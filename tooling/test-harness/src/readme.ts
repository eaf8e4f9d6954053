/**
 * The README's examples are run by tests, so the README cannot rot. An example sits between
 * `<!-- readme-NAME:start -->` and `<!-- readme-NAME:end -->`; this finds it and runs it as its own process.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const readmeUrl = new URL('../../../README.md', import.meta.url);

/** The code blocks of one language inside the README's marked section `name`, in order. */
export function readmeBlocks(name: string, language: string): string[] {
  const readme = readFileSync(readmeUrl, 'utf8');
  const section =
    readme.split(`<!-- readme-${name}:start -->`)[1]?.split(`<!-- readme-${name}:end -->`)[0] ?? '';
  return [...section.matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, 'g'))].map(
    (match) => match[1] ?? '',
  );
}

/**
 * Writes the README's TypeScript example `name` into `directory` (a package's folder, so that its imports resolve
 * as they would in an application), runs it with tsx against `env`, removes it, and returns what it printed.
 */
export async function runReadmeExample(
  name: string,
  directory: URL,
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const [code] = readmeBlocks(name, 'ts');
  if (!code) throw new Error(`README.md has no \`\`\`ts block between the readme-${name} markers`);
  const file = fileURLToPath(new URL(`readme-example-${name}-${process.pid}.ts`, directory));
  writeFileSync(file, code);
  try {
    const tsx = createRequire(import.meta.url).resolve('tsx');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--conditions=@fstore/source', '--import', tsx, file],
      {
        env: { ...process.env, ...env },
        timeout: 60_000,
      },
    );
    return stdout;
  } finally {
    rmSync(file, { force: true });
  }
}
