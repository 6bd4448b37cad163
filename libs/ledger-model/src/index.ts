// The ledger's domain rules, pure: stacks and their history, live functions, the kernel's
// stacking rules, undo plans, CVE exposure and PCI-DSS compliance (README.md).
export * from './time';
export * from './errors';
export * from './catalog';
export * from './stack';
export * from './live-functions';
export * from './kernel-rules';
export * from './undo';
export * from './exposure';
export * from './compliance';
export * from './verdict';
export * from './vex';
export * from './quarantine';
