import { events } from '@rebootless/contracts';
import { RolloutInputError, RolloutPreconditionError } from './errors';
import { Fleet } from './fleet';
import { selectHosts, type PatchForSelection } from './host-selection';
import { facts, make, OTHER_RELEASE, RELEASE } from './test-fleet';

const patch: PatchForSelection = {
  patchId: 'p',
  version: '1',
  kernelReleases: new Set([RELEASE]),
  moduleName: () => 'livepatch_p',
};

function fleet(): Fleet {
  const f = new Fleet();
  f.observeFacts(facts('web-1', RELEASE, { role: 'web' }), []);
  f.observeFacts(facts('web-2', OTHER_RELEASE, { role: 'web' }), []);
  f.observeFacts(facts('db-1', RELEASE, { role: 'db' }), [
    make(events.LivePatchState, { moduleName: 'livepatch_p', enabled: true }),
  ]);
  f.observeFacts(facts('db-2', RELEASE, { role: 'db' }), []);
  return f;
}

const selector = (s: Partial<events.HostSelector>) => make(events.HostSelector, s);

describe('selectHosts', () => {
  it('selects by labels, only on kernels the patch was built for', () => {
    expect(selectHosts(fleet().all(), selector({ labels: { role: 'web' } }), patch)).toEqual({
      targets: ['web-1'],
      alreadyPatched: [],
    });
  });

  it('skips and reports hosts whose kernel already runs the patch', () => {
    expect(selectHosts(fleet().all(), selector({ labels: { role: 'db' } }), patch)).toEqual({
      targets: ['db-2'],
      alreadyPatched: ['db-1'],
    });
  });

  it('selects explicit hosts', () => {
    expect(selectHosts(fleet().all(), selector({ hostIds: ['db-2', 'web-1'] }), patch).targets).toEqual([
      'db-2',
      'web-1',
    ]);
  });

  it('refuses an empty selector rather than target the whole fleet', () => {
    expect(() => selectHosts(fleet().all(), selector({}), patch)).toThrow(RolloutInputError);
  });

  it('refuses a selector that matches no host', () => {
    const attempt = () => selectHosts(fleet().all(), selector({ labels: { role: 'cache' } }), patch);
    expect(attempt).toThrow(RolloutPreconditionError);
    expect(attempt).toThrow('the selector matches no host (labels role=cache)');
  });

  it('refuses kernel releases the patch was not built for', () => {
    expect(() => selectHosts(fleet().all(), selector({ kernelReleases: [OTHER_RELEASE] }), patch)).toThrow(
      `patch p version 1 was not built for kernel release(s) ${OTHER_RELEASE} named in selector.kernel_releases; it was built for ${RELEASE}`,
    );
  });

  it('refuses when every matched host runs a kernel the patch was not built for', () => {
    expect(() => selectHosts(fleet().all(), selector({ hostIds: ['web-2'] }), patch)).toThrow(
      `patch p version 1 was not built for the selected hosts' kernels: they run ${OTHER_RELEASE}; it was built for ${RELEASE}`,
    );
  });

  it('refuses host ids no agent has reported', () => {
    expect(() => selectHosts(fleet().all(), selector({ hostIds: ['ghost'] }), patch)).toThrow(
      'selector.host_ids names host(s) no agent has reported: ghost',
    );
  });

  it('refuses when every selected host already carries the patch', () => {
    expect(() => selectHosts(fleet().all(), selector({ hostIds: ['db-1'] }), patch)).toThrow(
      'every selected host already runs patch p version 1',
    );
  });
});
