import { helpText, parseArgs, suggest, type ParsedCommand } from './args';
import { CLI } from './commands';
import { UsageError } from './errors';

const parse = (line: string) => parseArgs(line.split(' ').filter(Boolean), CLI);
const command = (line: string) => parse(line) as ParsedCommand;
const refusal = (line: string): string => {
  try {
    parse(line);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error(`"${line}" was accepted`);
};

describe('parsing the command line', () => {
  it('answers --version anywhere, except as the patch version of a command that takes one', () => {
    expect(parse('--version')).toEqual({ kind: 'version', json: false });
    expect(parse('hosts list --label a=b --version --json')).toEqual({ kind: 'version', json: true });
    expect(parse('rollout -V')).toEqual({ kind: 'version', json: false });
    expect(command('rollout create --patch p --version 2 --host h').flags['version']).toBe('2');
    expect(command('undo web-1 p --version 2').flags['version']).toBe('2');
  });

  it('finds the command, its positionals and its flags, global flags anywhere', () => {
    const parsed = command('--json build show 0190-abc --builder 10.0.0.1:7451');
    expect(parsed.command.path).toEqual(['build', 'show']);
    expect(parsed.positionals).toEqual({ BUILD_ID: '0190-abc' });
    expect(parsed.flags).toEqual({ json: true, builder: '10.0.0.1:7451' });
  });

  it('collects repeatable flags, takes --flag=value, and keeps values that start with a dash', () => {
    const parsed = command(
      'build submit --name n --version=1 --source f.c --kernel a --kernel=b --cve CVE-2024-1:high --cve CVE-2024-2:low --description -x',
    );
    expect(parsed.flags).toEqual({
      name: 'n',
      version: '1',
      source: 'f.c',
      kernel: ['a', 'b'],
      cve: ['CVE-2024-1:high', 'CVE-2024-2:low'],
      description: '-x',
    });
  });

  it('reads a command without subcommands and its two positionals', () => {
    const parsed = command('undo web-01 cve-2024-1086 --plan');
    expect(parsed.command.path).toEqual(['undo']);
    expect(parsed.positionals).toEqual({ HOST: 'web-01', PATCH: 'cve-2024-1086' });
    expect(parsed.flags).toEqual({ plan: true });
  });

  it('treats everything after -- as positionals', () => {
    expect(command('build show -- --odd-id').positionals).toEqual({ BUILD_ID: '--odd-id' });
  });

  it('answers --help and help with the topic asked about', () => {
    expect(parse('--help')).toEqual({ kind: 'help', topic: [] });
    expect(parse('build --help')).toEqual({ kind: 'help', topic: ['build'] });
    expect(parse('build submit --help')).toEqual({ kind: 'help', topic: ['build', 'submit'] });
    expect(parse('help rollout create')).toEqual({ kind: 'help', topic: ['rollout', 'create'] });
  });

  it('refuses an unknown command, listing the valid ones and the likely typo', () => {
    expect(refusal('bild list')).toBe(
      'unknown command "bild" (did you mean "build"?); the commands are: build, patch, rollout, hosts, upgrade, undo, audit, report, ledger (rebootless --help lists them with what they do)',
    );
    expect(refusal('frobnicate')).toMatch(/^unknown command "frobnicate"; the commands are: build, patch/);
  });

  it('refuses an unknown subcommand, listing the group’s subcommands', () => {
    expect(refusal('rollout strat x')).toBe(
      'unknown subcommand "rollout strat"; rollout takes: create, watch, pause, resume, approve, abort, rollback, list, show (rebootless rollout --help)',
    );
    expect(refusal('build lst')).toContain('(did you mean "list"?)');
  });

  it('asks for a subcommand or a command when none is given', () => {
    expect(refusal('build')).toBe('build needs a subcommand: submit, watch, list, show (rebootless build --help)');
    expect(refusal('')).toMatch(/^no command given; the commands are: build, patch/);
  });

  it('names a missing required flag and what it is for', () => {
    expect(refusal('build submit --version 1 --source f.c --kernel k')).toBe(
      'build submit needs --name NAME: patch name, stable across versions, e.g. cve-2024-1086-nf-tables',
    );
    expect(refusal('patch retract p --version 1')).toBe('patch retract needs --reason TEXT: why, for the audit trail');
  });

  it('names a missing positional with the usage line', () => {
    expect(refusal('build show')).toBe(
      'build show needs BUILD_ID: the build id (usage: rebootless build show BUILD_ID [options])',
    );
    expect(refusal('undo web-01')).toMatch(/^undo needs PATCH: the patch id to remove/);
  });

  it('refuses extra arguments, unknown flags, flags without values and values given twice', () => {
    expect(refusal('build show a b')).toBe('build show takes BUILD_ID, but was also given: "b"');
    expect(refusal('build list --stat failed')).toBe(
      'build list does not take --stat (did you mean "state"?); its options: --patch PATCH_ID, --state STATE, --limit N (rebootless build list --help)',
    );
    expect(refusal('build show x --builder')).toMatch(/^--builder needs a value: --builder ADDR/);
    expect(refusal('build show x --builder --json')).toMatch(/^--builder needs a value/);
    expect(refusal('build list --patch a --patch b')).toBe('--patch is given twice ("a" and "b"); give it once');
    expect(refusal('build list --json=yes')).toBe(
      '--json is a switch and takes no value (write --json, not --json=yes)',
    );
    expect(refusal('build list -x')).toMatch(/^unknown option "-x"/);
  });

  it('says where a command’s flag belongs when it comes before the command', () => {
    expect(refusal('--plan undo a b')).toBe('--plan belongs after the command (undo), e.g. rebootless undo --plan ...');
  });

  it('suggests only near misses', () => {
    expect(suggest('rolout', ['build', 'rollout'])).toBe('rollout');
    expect(suggest('lsit', ['list', 'show'])).toBe('list');
    expect(suggest('xyz', ['build', 'rollout'])).toBeUndefined();
  });
});

describe('help text', () => {
  it('lists every command of a group, and a command’s own options', () => {
    expect(helpText(CLI, ['build'])).toContain('  build submit  build a live patch from a fix');
    const submit = helpText(CLI, ['build', 'submit']);
    expect(submit).toMatch(
      /^usage: rebootless build submit --name NAME --version VERSION --kernel RELEASE \[options\]/,
    );
    expect(submit).toContain('--cve CVE-ID:SEVERITY');
    expect(submit).toContain('--insecure');
  });

  it('refuses help about a command that does not exist', () => {
    expect(() => helpText(CLI, ['bogus'])).toThrow(/unknown command "bogus"/);
  });
});
