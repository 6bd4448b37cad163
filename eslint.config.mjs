// ESLint 9 flat config: Nx's TypeScript/JavaScript presets, module boundaries by project tag, and
// framework/infrastructure imports banned from domain libs. Tags live in each project's
// package.json ("nx": { "tags": [...] }).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createProjectGraphAsync } from '@nx/devkit';
import nx from '@nx/eslint-plugin';

const root = dirname(fileURLToPath(import.meta.url));

// @nx/enforce-module-boundaries only reads Nx's cached project graph (.nx/workspace-data) and silently
// skips itself when there is none (fresh clone, CI) or checks against a stale one. Refresh it first,
// so a plain `eslint .` is always checked against the current imports and tags (about a second).
try {
  await createProjectGraphAsync({ exitOnError: false });
} catch (error) {
  process.stderr.write(`eslint.config.mjs: could not compute the Nx project graph: ${error?.message ?? error}\n`);
}

/** Project roots (apps/x, libs/x) whose package.json carries the tag. */
function projectRootsTagged(tag) {
  return ['apps', 'libs'].flatMap((group) => {
    let names = [];
    try {
      names = readdirSync(join(root, group));
    } catch {
      return [];
    }
    return names
      .filter((name) => {
        try {
          const pkg = JSON.parse(readFileSync(join(root, group, name, 'package.json'), 'utf8'));
          return pkg.nx?.tags?.includes(tag);
        } catch {
          return false;
        }
      })
      .map((name) => `${group}/${name}`);
  });
}

const domainRoots = projectRootsTagged('type:domain'); // currently libs/events

// app -> domain, infra, contracts (never another app); infra -> domain, infra, contracts;
// domain -> domain, contracts; contracts -> contracts; testing -> anything but apps.
const depConstraints = [
  { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:domain', 'type:infra', 'type:contracts'] },
  { sourceTag: 'type:infra', onlyDependOnLibsWithTags: ['type:domain', 'type:infra', 'type:contracts'] },
  { sourceTag: 'type:domain', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts'] },
  { sourceTag: 'type:contracts', onlyDependOnLibsWithTags: ['type:contracts'] },
  { sourceTag: 'type:testing', notDependOnLibsWithTags: ['type:app'] },
];

// Test files of any project may also use the testing lib (never an app). The testing lib wraps the
// libs it serves (libs/testing -> libs/kafka), so a lib's tests that use it close a project-level
// cycle (kafka -> testing -> kafka); edges into type:testing are exempt from the cycle check. Only
// test files can make them: for non-test files the constraints below still forbid importing it.
const testDepConstraints = depConstraints.map((constraint) =>
  constraint.onlyDependOnLibsWithTags
    ? { ...constraint, onlyDependOnLibsWithTags: [...constraint.onlyDependOnLibsWithTags, 'type:testing'] }
    : constraint,
);

const boundaries = (constraints) => [
  'error',
  {
    enforceBuildableLibDependency: true,
    allow: [],
    ignoredCircularDependencies: [['*', 'tag:type:testing']],
    depConstraints: constraints,
  },
];

const TS_JS = ['**/*.ts', '**/*.tsx', '**/*.cts', '**/*.mts', '**/*.js', '**/*.jsx', '**/*.cjs', '**/*.mjs'];
const TESTS = ['**/*.spec.ts', '**/*.int.spec.ts', '**/*.e2e.spec.ts'];

export default [
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      'libs/contracts/src/gen/**',
      '.data/**',
      '.data.previous/**',
      '**/coverage/**',
      '.nx/**',
      '.cache/**',
      'tmp/**',
    ],
  },
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  ...nx.configs['flat/javascript'],
  {
    files: TS_JS,
    rules: { '@nx/enforce-module-boundaries': boundaries(depConstraints) },
  },
  {
    files: TESTS,
    rules: { '@nx/enforce-module-boundaries': boundaries(testDepConstraints) },
  },
  {
    // The domain stays free of frameworks and infrastructure (DESIGN.md: events are pure domain).
    files: domainRoots.map((projectRoot) => `${projectRoot}/src/**/*`),
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@nestjs/*', '@grpc/*', 'typeorm', 'typeorm/*', 'kafkajs', 'kafkajs/*'],
              message:
                'Domain libs (tag type:domain) must not depend on frameworks or infrastructure (NestJS, gRPC, TypeORM, kafkajs); put that code in an infra lib or an app.',
            },
          ],
        },
      ],
    },
  },
  {
    // With noUncheckedIndexedAccess, `!` after a checked index is the honest spelling.
    files: TS_JS,
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
  {
    // CommonJS files: Node's module scope.
    files: ['**/*.cjs', 'jest.config.js'],
    languageOptions: { sourceType: 'commonjs' },
  },
];
