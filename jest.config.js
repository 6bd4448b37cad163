// One Jest run, three tiers told apart by file name (DESIGN.md section 8):
// *.spec.ts unit, *.int.spec.ts real broker and databases, *.e2e.spec.ts built services as processes,
// *.kernel.spec.ts a real kernel in QEMU.
const swc = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
    },
    module: { type: 'commonjs' },
  },
];

const shared = {
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: { '^@rebootless/([a-z-]+)$': '<rootDir>/libs/$1/src' },
  testEnvironment: 'node',
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
};

module.exports = {
  // Per-project testTimeout is ignored by Jest 29; int and e2e tests need real brokers and processes.
  testTimeout: 120000,
  globalSetup: '<rootDir>/libs/testing/src/jest-global-setup.ts',
  globalTeardown: '<rootDir>/libs/testing/src/jest-global-teardown.ts',
  projects: [
    {
      ...shared,
      displayName: 'unit',
      testMatch: ['<rootDir>/{apps,libs}/**/*.spec.ts'],
      testPathIgnorePatterns: [
        ...shared.testPathIgnorePatterns,
        '\\.int\\.spec\\.ts$',
        '\\.e2e\\.spec\\.ts$',
        '\\.kernel\\.spec\\.ts$',
      ],
    },
    { ...shared, displayName: 'int', testMatch: ['<rootDir>/{apps,libs}/**/*.int.spec.ts'] },
    { ...shared, displayName: 'e2e', testMatch: ['<rootDir>/{apps,libs}/**/*.e2e.spec.ts'] },
    // A real Debian kernel booted in QEMU (libs/kernel-lab); `npm run test:kernel` runs only these.
    { ...shared, displayName: 'kernel', testMatch: ['<rootDir>/{apps,libs}/**/*.kernel.spec.ts'] },
  ],
};
