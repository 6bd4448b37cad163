import { KernelError } from '@rebootless/kernel-model';
import { parseOsRelease } from './host-facts';
import { kernelErrorFromFs, kernelErrorFromKmod } from './kernel-errors';

describe('os-release parsing', () => {
  it('reads quoted and unquoted values, skips comments and unescapes double quotes', () => {
    expect(
      parseOsRelease(
        '# comment\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nNAME=\'Ubuntu\'\nVARIANT="say \\"hi\\""\n\ngarbage\n',
      ),
    ).toEqual({ PRETTY_NAME: 'Ubuntu 24.04.1 LTS', ID: 'ubuntu', NAME: 'Ubuntu', VARIANT: 'say "hi"' });
  });
});

describe('kernel error mapping', () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: write failed`), { code });

  it('a sysfs write refused by the kernel keeps its errno (EBUSY, EINVAL) and says what was written', () => {
    const busy = kernelErrorFromFs(errno('EBUSY'), 'setEnabled', 'write 0 to /sys/kernel/livepatch/lp/enabled', 'lp');
    expect(busy).toBeInstanceOf(KernelError);
    expect([busy.code, busy.operation, busy.moduleName]).toEqual(['EBUSY', 'setEnabled', 'lp']);
    expect(busy.message).toContain('write 0 to /sys/kernel/livepatch/lp/enabled');
    expect(kernelErrorFromFs(errno('EINVAL'), 'setEnabled', 'w').code).toBe('EINVAL');
  });

  it('EAGAIN is EBUSY, an errno the port does not name is EIO', () => {
    expect(kernelErrorFromFs(errno('EAGAIN'), 'force', 'w').code).toBe('EBUSY');
    expect(kernelErrorFromFs(errno('ENOSPC'), 'force', 'w').code).toBe('EIO');
    expect(kernelErrorFromFs('weird', 'force', 'w').code).toBe('EIO');
  });

  it('old kmod wording of rmmod errors is mapped too', () => {
    const error = kernelErrorFromKmod(
      "rmmod: ERROR: libkmod/libkmod-module.c:793 kmod_module_remove_module() could not remove 'lp': Resource temporarily unavailable\n",
      'removeModule',
      'lp',
      'rmmod failed',
    );
    expect(error.code).toBe('EBUSY');
    expect(kernelErrorFromKmod('', 'removeModule', 'lp', 'rmmod exited with 1').message).toBe(
      'EIO: rmmod exited with 1',
    );
  });
});
