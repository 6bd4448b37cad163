import { readOutsideSandbox } from './diagnostics';
import { sandboxCommand } from './sandbox';

const usrMerged = { isSymlink: (p: string) => p !== '/lib32', exists: (p: string) => p !== '/libx32' };
const root = {
  kind: 'root',
  bwrap: '/usr/bin/bwrap',
  setpriv: '/usr/bin/setpriv',
  prlimit: '/usr/bin/prlimit',
} as const;
const userns = { kind: 'userns', bwrap: '/usr/bin/bwrap', prlimit: '/usr/bin/prlimit' } as const;

describe('sandboxCommand', () => {
  const spec = {
    argv: ['/usr/bin/make', '-C', '/k/usr/src/tree', 'M=/jobs/1'],
    cwd: '/jobs/1',
    readOnly: ['/k/usr/src/tree', '/k', '/k/usr/src/common'],
    writable: ['/jobs/1'],
  };

  it('Given a root builder, When it builds the command, Then the compiler runs as nobody behind prlimit, without network', () => {
    const { command, args } = sandboxCommand(spec, root, usrMerged);
    expect(command).toBe('/usr/bin/prlimit');
    const bwrap = args.indexOf('/usr/bin/bwrap');
    expect(args.slice(0, bwrap)).toEqual([
      '--as=2147483648',
      '--fsize=268435456',
      '--nproc=512',
      '--cpu=600',
      '--core=0',
      '--',
    ]);
    expect(args).toContain('--unshare-net');
    expect(args).not.toContain('--share-net');
    expect(args.slice(-8)).toEqual(
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '--inh-caps=-all',
        '--bounding-set=-all',
        '--',
        ...spec.argv,
      ].slice(-8),
    );
    // Only the outermost of nested read-only trees is bound; / never is.
    const binds = args.flatMap((a, i) => (a === '--ro-bind' || a === '--bind' ? [`${a} ${args[i + 1]}`] : []));
    expect(binds).toEqual(['--ro-bind /usr', '--ro-bind /lib32', '--ro-bind /k', '--bind /jobs/1']);
    expect(args.join(' ')).toContain('--symlink usr/bin /bin');
  });

  it('Given a developer builder, When it builds the command, Then bwrap unshares everything, user namespace included, and keeps the uid', () => {
    const { args } = sandboxCommand(spec, userns, usrMerged);
    expect(args).toContain('--unshare-all');
    expect(args.join(' ')).not.toContain('setpriv');
    expect(args.slice(-4)).toEqual(spec.argv);
  });

  it('Given "/" or a relative path to bind, When it builds the command, Then it refuses', () => {
    expect(() => sandboxCommand({ ...spec, readOnly: ['/'] }, root, usrMerged)).toThrow(
      /absolute, normalised and not "\/"/,
    );
    expect(() => sandboxCommand({ ...spec, writable: ['jobs/1'] }, root, usrMerged)).toThrow(/"jobs\/1"/);
    expect(() => sandboxCommand({ ...spec, readOnly: ['/k/../etc'] }, root, usrMerged)).toThrow(/"\/k\/\.\.\/etc"/);
  });
});

describe('readOutsideSandbox', () => {
  const visible = ['/cache/releases/6.1.0-57-cloud-amd64'];

  it.each([
    ['.tmp/cc1.s:8: Error: file not found: /etc/shadow', '/etc/shadow'],
    ['rbl.c:64:10: fatal error: /srv/pki/ca/ca.key: No such file or directory', '/srv/pki/ca/ca.key'],
    ['rbl.c:64:10: fatal error: /etc/shadow: Permission denied', '/etc/shadow'],
    ['.tmp/cc1.s:8: Error: file not found: ../../../etc/shadow', '../../../etc/shadow'],
  ])('Given the line %j, Then the file read outside is %j', (line, file) => {
    expect(readOutsideSandbox([line], '/jobs/1', visible)).toBe(file);
  });

  it.each([
    'rbl.c:3:10: fatal error: missing.h: No such file or directory',
    'rbl.c:3:10: fatal error: linux/nothere.h: No such file or directory',
    'rbl.c:3:10: fatal error: /usr/include/nothere.h: No such file or directory',
    'rbl.c:3:10: fatal error: /cache/releases/6.1.0-57-cloud-amd64/usr/src/x.h: No such file or directory',
    "rbl.c:6:17: error: 'undefined_thing' undeclared",
  ])('Given the ordinary error %j, Then nothing is read outside', (line) => {
    expect(readOutsideSandbox([line], '/jobs/1', visible)).toBeUndefined();
  });
});
