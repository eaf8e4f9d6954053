// The public packages (packages/*) must install in a host's pnpm workspace as they are: no `catalog:` (it resolves
// against the host's catalog), no `workspace:` link to a package a host does not have. Their plain versions are
// checked against this workspace's catalog, which stays the one place that pins each version.
//   pnpm check:manifests
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const catalog = {};
let inCatalog = false;
for (const line of readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8').split('\n')) {
  if (/^\S/.test(line)) inCatalog = line.startsWith('catalog:');
  const entry = inCatalog && /^\s+"?([^":]+)"?:\s*(\S+)\s*$/.exec(line);
  if (entry) catalog[entry[1]] = entry[2];
}

const manifests = readdirSync(join(root, 'packages')).map((dir) => ({
  dir: `packages/${dir}`,
  manifest: JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')),
}));
const publicNames = new Set(
  manifests.filter(({ manifest }) => !manifest.private).map(({ manifest }) => manifest.name),
);
const problems = [];
for (const { dir, manifest } of manifests) {
  if (manifest.private) {
    problems.push(`${dir}: private; packages/ holds what hosts take in, private tools go to tooling/`);
    continue;
  }
  const say = (message) => problems.push(`${dir} (${manifest.name}): ${message}`);
  for (const section of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
    for (const [name, spec] of Object.entries(manifest[section] ?? {})) {
      if (spec.startsWith('catalog:')) say(`${section}.${name} is "${spec}": a host has no such catalog`);
      else if (spec.startsWith('workspace:')) {
        if (!publicNames.has(name))
          say(`${section}.${name} is "${spec}", which a host's workspace does not hold`);
      } else if (section !== 'peerDependencies' && catalog[name]) {
        const allowed =
          section === 'devDependencies' ? [catalog[name]] : [catalog[name], `^${catalog[name]}`];
        if (!allowed.includes(spec))
          say(`${section}.${name} is "${spec}"; the catalog pins ${catalog[name]}`);
      } else if (section !== 'peerDependencies') {
        say(`${section}.${name} is "${spec}" and the catalog has no ${name}: pin it there`);
      }
    }
  }
  for (const name of Object.keys(manifest.peerDependencies ?? {})) {
    if (!manifest.devDependencies?.[name])
      say(`peer ${name} is not a devDependency, so its types are never built against`);
  }
  if (!manifest.files?.includes('dist')) say('"files" does not ship dist');
  if (!manifest.exports?.['.']?.types) say('exports["."] has no types');
  if (!manifest.scripts?.prepack) say('no prepack script: a tarball could ship a stale dist');
}
if (problems.length > 0) {
  console.error(
    `check:manifests: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}`,
  );
  process.exit(1);
}
console.log(`check:manifests: ${manifests.length} public packages install in a host workspace as they are`);
