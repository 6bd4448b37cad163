// Every command the CLI has, with its arguments and options: the parser, the help text and
// the README read this one table.
import type { CommandSpec, CommandTable, FlagSpec } from './args';

export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: 'json', help: 'print one JSON document on stdout instead of tables; no progress on stderr' },
  { name: 'builder', value: 'ADDR', help: 'the builder (BuildService), default 127.0.0.1:7451 (REBOOTLESS_BUILDER)' },
  {
    name: 'dispatcher',
    value: 'ADDR',
    help: 'the dispatcher (RolloutService), default 127.0.0.1:7452 (REBOOTLESS_DISPATCHER)',
  },
  { name: 'ledger', value: 'ADDR', help: 'the ledger (LedgerService), default 127.0.0.1:7453 (REBOOTLESS_LEDGER)' },
  {
    name: 'token',
    value: 'TOKEN',
    help: 'operator bearer token (REBOOTLESS_TOKEN, or a file in REBOOTLESS_TOKEN_FILE); mint one with node scripts/pki.mjs token',
  },
  {
    name: 'pki',
    value: 'DIR',
    help: 'pki directory holding ca.crt and the CLI certificate user-cli.crt/.key (REBOOTLESS_PKI_DIR; default .data/pki)',
  },
  { name: 'insecure', help: 'plaintext gRPC without certificates, for services run with REBOOTLESS_INSECURE=true' },
  { name: 'help', help: 'show this help' },
];

/** The ledger's host filters, as `hosts list` and `hosts count` take them. */
const HOST_FILTER_FLAGS: readonly FlagSpec[] = [
  { name: 'kernel', value: 'RELEASE', help: 'only hosts running this kernel release' },
  { name: 'label', value: 'KEY=VALUE', repeatable: true, help: 'only hosts carrying this label' },
  { name: 'patch', value: 'PATCH_ID', help: 'only hosts with this patch enabled' },
  { name: 'exposed-to', value: 'CVE-ID', help: 'only hosts this CVE affects and no enabled patch fixes' },
];

const SELECTOR_FLAGS: readonly FlagSpec[] = [
  { name: 'kernel', value: 'RELEASE', repeatable: true, help: 'hosts running this kernel release' },
  { name: 'label', value: 'KEY=VALUE', repeatable: true, help: 'hosts carrying this label (all must match)' },
  { name: 'host', value: 'HOST', repeatable: true, help: 'this host' },
];

const STRATEGY_FLAGS: readonly FlagSpec[] = [
  { name: 'canary', value: 'N', help: 'a first wave of N hosts' },
  { name: 'canary-host', value: 'HOST', repeatable: true, help: 'put this host in the canary wave' },
  { name: 'waves', value: 'SIZES', help: 'wave sizes after the canary, percents or counts: 10%,40%,50% or 5,20,100' },
  { name: 'max-in-flight', value: 'N', help: 'at most N hosts applying at once' },
  { name: 'soak', value: 'DURATION', help: 'wait this long after each wave before the next, e.g. 5m' },
  { name: 'failure-budget', value: 'N', help: 'failed hosts a wave may have before on-failure applies' },
  { name: 'total-failure-budget', value: 'N', help: 'failed hosts the whole rollout may have' },
  { name: 'require-approval', help: 'wait for an approver before the first wave' },
  { name: 'approve-each-wave', help: 'wait for an approver before every wave' },
  { name: 'on-failure', value: 'pause|abort|rollback', help: 'what to do once a failure budget is spent' },
  { name: 'apply-timeout', value: 'DURATION', help: 'how long a host may take to apply' },
  { name: 'offline-deadline', value: 'DURATION', help: 'how long to wait for an offline host before timing it out' },
  { name: 'window', value: '"DAYS HH:MM-HH:MM"', help: 'maintenance window in UTC, e.g. "Sat,Sun 02:00-05:00"' },
];

const WATCH: FlagSpec = { name: 'watch', help: 'follow it until it ends (progress on stderr), exit code as for watch' };

export const COMMANDS: readonly CommandSpec[] = [
  {
    path: ['build', 'submit'],
    summary: 'build a live patch from a fix for one or more kernel releases',
    positionals: [],
    flags: [
      {
        name: 'name',
        value: 'NAME',
        required: true,
        help: 'patch name, stable across versions, e.g. cve-2024-1086-nf-tables',
      },
      { name: 'version', value: 'VERSION', required: true, help: 'patch version, e.g. 1.0.0' },
      { name: 'source', value: 'FILE', help: 'the fix as livepatch module C source (klp API)' },
      { name: 'diff', value: 'FILE', help: 'the fix as a unified diff against the kernel source' },
      {
        name: 'kernel',
        value: 'RELEASE',
        repeatable: true,
        required: true,
        help: 'build for this kernel release, e.g. 6.1.0-18-cloud-amd64',
      },
      {
        name: 'cve',
        value: 'CVE-ID:SEVERITY',
        repeatable: true,
        help: 'a CVE the patch fixes, e.g. CVE-2024-1086:critical (low|medium|high|critical[:CVSS])',
      },
      { name: 'replace', help: 'cumulative patch: replaces every older patch once enabled' },
      { name: 'description', value: 'TEXT', help: 'what the patch does, for the audit trail' },
      WATCH,
      { name: 'logs', help: 'with --watch: also print the compiler output on stderr' },
    ],
    examples: [
      'rebootless build submit --name cve-2024-1086-nf-tables --version 1 --source fix.c --kernel 6.1.0-18-cloud-amd64 --cve CVE-2024-1086:high --watch',
    ],
  },
  {
    path: ['build', 'watch'],
    summary: 'follow a build to its end: stages per kernel release; exit 0 when it succeeded, 1 when not',
    positionals: [{ name: 'BUILD_ID', help: 'the id build submit printed' }],
    flags: [{ name: 'logs', help: 'also print the compiler output on stderr' }],
  },
  {
    path: ['build', 'list'],
    summary: 'builds, newest first',
    positionals: [],
    flags: [
      { name: 'patch', value: 'PATCH_ID', help: 'only builds of this patch' },
      { name: 'state', value: 'STATE', repeatable: true, help: 'queued, running, succeeded, failed or cancelled' },
      { name: 'limit', value: 'N', help: 'at most N builds (default: all)' },
    ],
  },
  {
    path: ['build', 'show'],
    summary: 'one build: its kernels, stages, artifacts and diagnostics',
    positionals: [{ name: 'BUILD_ID', help: 'the build id' }],
    flags: [],
  },
  {
    path: ['patch', 'retract'],
    summary: 'retract a patch version: agents refuse it and rollouts stop sending it',
    positionals: [{ name: 'PATCH_ID', help: 'the patch id, e.g. cve-2024-1086-nf-tables' }],
    flags: [
      { name: 'version', value: 'VERSION', required: true, help: 'the version to retract' },
      { name: 'reason', value: 'TEXT', required: true, help: 'why, for the audit trail' },
    ],
  },
  {
    path: ['patch', 'list'],
    summary: 'published patches, as the ledger knows them',
    positionals: [],
    flags: [
      { name: 'cve', value: 'CVE-ID', help: 'only patches fixing this CVE' },
      { name: 'kernel', value: 'RELEASE', help: 'only patches built for this kernel release' },
      { name: 'include-retracted', help: 'also retracted patches' },
    ],
  },
  {
    path: ['rollout', 'create'],
    summary: 'roll a patch version out to a selection of hosts in waves',
    positionals: [],
    flags: [
      { name: 'patch', value: 'PATCH_ID', required: true, help: 'the patch to roll out' },
      { name: 'version', value: 'VERSION', required: true, help: 'its version' },
      ...SELECTOR_FLAGS,
      ...STRATEGY_FLAGS,
      { name: 'allow-force', help: 'let agents force a stalled transition (the host must be rebooted eventually)' },
      { name: 'allow-downgrade', help: 'let agents load an older version than they run' },
      {
        name: 'skip-approval',
        help: 'start the first wave without an approver (needs the release-manager role; never with --allow-force or --allow-downgrade)',
      },
      { name: 'dry-run', help: 'plan the waves and print them without creating anything' },
      WATCH,
    ],
    examples: [
      'rebootless rollout create --patch cve-2024-1086-nf-tables --version 1 --kernel 6.1.0-18-cloud-amd64 --canary 2 --waves 10%,40%,50% --soak 5m --on-failure pause',
    ],
  },
  {
    path: ['rollout', 'watch'],
    summary: 'follow a rollout wave by wave until it ends; exit 0 when completed, 1 when aborted or rolled back',
    positionals: [{ name: 'ROLLOUT_ID', help: 'the rollout id' }],
    flags: [],
  },
  {
    path: ['rollout', 'pause'],
    summary: 'stop starting new hosts; hosts already applying finish',
    positionals: [{ name: 'ROLLOUT_ID', help: 'the rollout id' }],
    flags: [{ name: 'reason', value: 'TEXT', help: 'why, for the audit trail' }],
  },
  {
    path: ['rollout', 'resume'],
    summary: 'continue a paused rollout',
    positionals: [{ name: 'ROLLOUT_ID', help: 'the rollout id' }],
    flags: [],
  },
  {
    path: ['rollout', 'approve'],
    summary: 'open the wave waiting for approval (needs the approver role)',
    positionals: [{ name: 'ROLLOUT_ID', help: 'the rollout id' }],
    flags: [
      {
        name: 'wave',
        value: 'INDEX',
        help: 'the wave you approve (default: the one waiting); refused if another is waiting',
      },
      { name: 'comment', value: 'TEXT', help: 'for the audit trail' },
    ],
  },
  {
    path: ['rollout', 'abort'],
    summary: 'stop sending commands; hosts keep what they applied',
    positionals: [{ name: 'ROLLOUT_ID', help: 'the rollout id' }],
    flags: [{ name: 'reason', value: 'TEXT', required: true, help: 'why, for the audit trail' }],
  },
  {
    path: ['rollout', 'rollback'],
    summary: 'revert the patch on every host the rollout reached, newest wave first',
    positionals: [{ name: 'ROLLOUT_ID', help: 'the rollout id' }],
    flags: [{ name: 'reason', value: 'TEXT', required: true, help: 'why, for the audit trail' }, WATCH],
  },
  {
    path: ['rollout', 'list'],
    summary: 'rollouts, newest first',
    positionals: [],
    flags: [
      { name: 'patch', value: 'PATCH_ID', help: 'only rollouts of this patch' },
      {
        name: 'state',
        value: 'STATE',
        repeatable: true,
        help: 'awaiting-approval, running, paused, completed, aborted, rolling-back or rolled-back',
      },
      { name: 'limit', value: 'N', help: 'at most N rollouts (default: all)' },
    ],
  },
  {
    path: ['rollout', 'show'],
    summary: 'one rollout: its waves and every host’s state',
    positionals: [{ name: 'ROLLOUT_ID', help: 'the rollout id' }],
    flags: [{ name: 'timeline', help: 'also its events from the ledger (approvals, pauses, outcomes)' }],
  },
  {
    path: ['hosts', 'list'],
    summary: 'hosts and their live patches, now or at an instant',
    positionals: [],
    flags: [
      ...HOST_FILTER_FLAGS,
      { name: 'at', value: 'INSTANT', help: 'each host’s stack as it was then (RFC 3339, now, -2h)' },
      {
        name: 'deadline-days',
        value: 'DAYS',
        help: 'days from a fix’s publication before a host is exposed past deadline (default 30)',
      },
    ],
  },
  {
    path: ['hosts', 'count'],
    summary: 'how many hosts match, counted by the ledger (no host is listed)',
    positionals: [],
    flags: [...HOST_FILTER_FLAGS],
    examples: ['rebootless hosts count --patch lp-cve-2026-1234 --label site=bnl'],
  },
  {
    path: ['upgrade'],
    summary:
      'bring the selected hosts up to date: one rollout per published, non-retracted patch version they miss, in waves, with the usual approvals',
    positionals: [],
    flags: [
      ...SELECTOR_FLAGS,
      ...STRATEGY_FLAGS,
      { name: 'allow-force', help: 'let agents force a stalled transition (the host must be rebooted eventually)' },
      { name: 'dry-run', help: 'list what each host would get and create nothing' },
    ],
    examples: [
      'rebootless upgrade --label role=web --dry-run',
      'rebootless upgrade --label role=web --canary 2 --waves 50%,50% --require-approval',
    ],
  },
  {
    path: ['hosts', 'check'],
    summary:
      'a Nagios/Icinga check over the hosts’ verdicts: exit 0 OK, 1 WARNING (patch missing, reboot required), 2 CRITICAL (exposed past deadline, drift), 3 UNKNOWN (offline, no host, no answer)',
    positionals: [],
    flags: [
      ...SELECTOR_FLAGS,
      {
        name: 'deadline-days',
        value: 'DAYS',
        help: 'days from a fix’s publication before a host is exposed past deadline (default 30)',
      },
    ],
    examples: ['rebootless hosts check --host web-17', 'rebootless hosts check --label role=db --deadline-days 14'],
  },
  {
    path: ['hosts', 'revoke-key'],
    summary:
      'revoke a host’s agent key (a stolen or rebuilt host): the dispatcher refuses its relays and readers keep what it signs afterwards out of the read models (needs the operator role)',
    positionals: [{ name: 'HOST', help: 'the host id' }],
    flags: [
      { name: 'reason', value: 'TEXT', required: true, help: 'why, for the audit trail' },
      { name: 'epoch', value: 'EPOCH', help: 'only this epoch’s key (default: every key bound so far)' },
    ],
    examples: ['rebootless hosts revoke-key web-17 --reason "disk stolen"'],
  },
  {
    path: ['hosts', 'show'],
    summary: 'one host: its facts and patch stack (what code runs for each patched function), now or at an instant',
    positionals: [{ name: 'HOST', help: 'the host id' }],
    flags: [
      {
        name: 'at',
        value: 'INSTANT',
        help: 'the stack as it was then (RFC 3339, now, -2h), with the event that proves it',
      },
      { name: 'history', help: 'also the host’s events, oldest first' },
    ],
  },
  // Issue 21: the operator's way out of the agent's crash-loop guard.
  {
    path: ['hosts', 'clear-quarantine'],
    summary:
      'take a patch out of a host’s quarantine (its agent refused it after the host went down soon after applying it), so a later rollout may apply it again',
    positionals: [{ name: 'HOST', help: 'the host id' }],
    flags: [
      { name: 'patch', value: 'PATCH_ID', required: true, help: 'the quarantined patch' },
      { name: 'version', value: 'VERSION', required: true, help: 'its quarantined version' },
      { name: 'reason', value: 'TEXT', required: true, help: 'why it is safe to try again, for the audit trail' },
    ],
    examples: [
      'rebootless hosts clear-quarantine web-17 --patch cve-2024-1086 --version 1.0.0 --reason "crash was a PSU fault, INC-4711"',
    ],
  },
  {
    path: ['undo'],
    summary: 'remove one patch from a host, as the ledger’s undo plan says',
    positionals: [
      { name: 'HOST', help: 'the host id' },
      { name: 'PATCH', help: 'the patch id to remove' },
    ],
    flags: [
      { name: 'plan', help: 'only show the plan: steps, which functions fall back to what, warnings' },
      { name: 'reason', value: 'TEXT', help: 'why, for the audit trail' },
      { name: 'version', value: 'VERSION', help: 'only this version (default: whatever the host carries)' },
      { name: 'allow-downgrade', help: 'needed to undo a cumulative (replace) patch: reloads the previous one' },
      { name: 'dry-run', help: 'ask the dispatcher to plan the undo rollout without running it' },
      WATCH,
    ],
  },
  {
    path: ['audit'],
    summary: 'the audit log: who did what to which host, when (from the ledger)',
    positionals: [],
    flags: [
      { name: 'from', value: 'INSTANT', help: 'events at or after (RFC 3339, now, -7d)' },
      { name: 'to', value: 'INSTANT', help: 'events at or before (RFC 3339, now, -2h)' },
      { name: 'host', value: 'HOST', help: 'events about this host' },
      { name: 'actor', value: 'ID', help: 'events caused by this user, service or host' },
      { name: 'type', value: 'EVENT_TYPE', repeatable: true, help: 'events of this type, e.g. PatchApplied' },
      { name: 'correlation', value: 'ID', help: 'events of this rollout or build' },
      { name: 'producer', value: 'ID', help: 'events written by this producer, e.g. dispatcher or agent/web-01' },
      { name: 'envelopes', help: 'include each signed envelope (base64 in --json) for re-verification' },
    ],
  },
  {
    path: ['report', 'pci'],
    summary: 'PCI-DSS patch compliance: for each CVE, hosts patched within the deadline, late, or not at all',
    positionals: [],
    flags: [
      { name: 'as-of', value: 'INSTANT', help: 'the report as of this instant (default now)' },
      { name: 'from', value: 'INSTANT', help: 'start of the reporting period (default: open)' },
      { name: 'format', value: 'table|json|csv', help: 'output format (default table; --json is json)' },
      {
        name: 'min-severity',
        value: 'SEVERITY',
        help: 'leave out CVEs below this: low, medium, high, critical (default critical)',
      },
      {
        name: 'deadline-days',
        value: 'DAYS',
        help: 'days allowed from a fix’s publication to its application (default 30)',
      },
      {
        name: 'exempt',
        value: 'HOST',
        repeatable: true,
        help: 'report this host as exempt (e.g. being decommissioned)',
      },
      ...SELECTOR_FLAGS,
    ],
  },
  {
    path: ['report', 'vex'],
    summary:
      'OpenVEX documents for vulnerability scanners: per host, each CVE a live patch fixes (fixed) or it is exposed to (affected)',
    positionals: [],
    flags: [
      { name: 'host', value: 'HOST', repeatable: true, help: 'this host' },
      { name: 'label', value: 'KEY=VALUE', repeatable: true, help: 'hosts carrying this label (all must match)' },
      { name: 'as-of', value: 'INSTANT', help: 'the documents as of this instant (default now)' },
      {
        name: 'out-dir',
        value: 'DIR',
        help: 'write one HOST.openvex.json per host there (needed for more than one host); default: the document on stdout',
      },
    ],
    examples: [
      'rebootless report vex --host web-17 > web-17.openvex.json && trivy vm --vex web-17.openvex.json ...',
      'rebootless report vex --label role=db --out-dir vex/',
    ],
  },
  {
    path: ['ledger', 'verify'],
    summary: 're-check every producer’s hash chain and signatures over the whole log; exit 1 on any finding',
    positionals: [],
    flags: [{ name: 'producer', value: 'ID', help: 'only this producer, e.g. builder or agent/web-01' }],
  },
];

export const CLI: CommandTable = { program: 'rebootless', commands: COMMANDS, globalFlags: GLOBAL_FLAGS };
