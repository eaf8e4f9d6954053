/**
 * The examples in the README and in docs/ are run by tests, so the documentation cannot rot. An example sits between
 * `<!-- readme-NAME:start -->` and `<!-- readme-NAME:end -->` in a markdown file of this repository; this finds it
 * and hands it to the test, or runs it as its own process.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repositoryUrl = new URL('../../../', import.meta.url);

/**
 * The code blocks of one language inside the marked section `name` of a markdown file (a path from the repository's
 * root, default `README.md`), in order. Throws when the file has no such section, so a moved example fails loudly.
 */
export function readmeBlocks(name: string, language: string, file = 'README.md'): string[] {
  const markdown = readFileSync(new URL(file, repositoryUrl), 'utf8');
  const start = `<!-- readme-${name}:start -->`;
  const end = `<!-- readme-${name}:end -->`;
  const from = markdown.indexOf(start);
  const to = markdown.indexOf(end, from);
  if (from < 0 || to < 0) throw new Error(`${file} has no section between ${start} and ${end}`);
  const section = markdown.slice(from + start.length, to);
  return [...section.matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, 'g'))].map(
    (match) => match[1] ?? '',
  );
}

/**
 * Writes the TypeScript example `name` of a markdown file (default `README.md`) into `directory` (a package's folder,
 * so that its imports resolve as they would in an application), runs it with tsx against `env`, removes it, and
 * returns what it printed.
 */
export async function runReadmeExample(
  name: string,
  directory: URL,
  env: NodeJS.ProcessEnv,
  file = 'README.md',
): Promise<string> {
  const [code] = readmeBlocks(name, 'ts', file);
  if (!code) throw new Error(`${file} has no \`\`\`ts block between the readme-${name} markers`);
  const path = fileURLToPath(new URL(`readme-example-${name}-${process.pid}.ts`, directory));
  writeFileSync(path, code);
  try {
    const tsx = createRequire(import.meta.url).resolve('tsx');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--conditions=@fstore/source', '--import', tsx, path],
      {
        env: { ...process.env, ...env },
        timeout: 60_000,
      },
    );
    return stdout;
  } finally {
    rmSync(path, { force: true });
  }
}
