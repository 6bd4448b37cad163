import { BuildQueue, QueueFullError } from './build-queue';

describe('the bounded build queue', () => {
  it('Given two builds, When workers take jobs, Then the first build is taken release by release before the second', () => {
    const queue = new BuildQueue(4);
    queue.admit('b1', ['r1', 'r2']);
    queue.admit('b2', ['r1']);

    expect([queue.next(), queue.next(), queue.next(), queue.next()]).toEqual([
      { buildId: 'b1', release: 'r1' },
      { buildId: 'b1', release: 'r2' },
      { buildId: 'b2', release: 'r1' },
      undefined,
    ]);
  });

  it('Given a full queue, When one more build comes, Then it is refused naming the setting', () => {
    const queue = new BuildQueue(1);
    queue.admit('b1', ['r1']);

    expect(() => queue.admit('b2', ['r1'])).toThrow(QueueFullError);
    expect(() => queue.admit('b2', ['r1'])).toThrow('the build queue is full (1 builds waiting, BUILDER_QUEUE_SIZE)');
  });

  it('Given a full queue, When a worker starts the waiting build’s last release, Then there is room again', () => {
    const queue = new BuildQueue(1);
    queue.admit('b1', ['r1']);
    queue.next();

    expect(() => queue.admit('b2', ['r1'])).not.toThrow();
  });

  it('Given a place held while the request is recorded, Then it counts as waiting until used or given back', () => {
    const queue = new BuildQueue(1);
    const held = queue.reserve();

    expect(() => queue.reserve()).toThrow(QueueFullError);
    held.cancel();
    expect(queue.length).toBe(0);
    queue.reserve().admit('b1', ['r1']);
    expect(queue.next()).toEqual({ buildId: 'b1', release: 'r1' });
  });

  it('Given a cancelled build, When removed, Then its unstarted releases are dropped and others keep their turn', () => {
    const queue = new BuildQueue(4);
    queue.admit('b1', ['r1', 'r2']);
    queue.admit('b2', ['r1']);
    queue.next();

    expect(queue.remove('b1')).toEqual(['r2']);
    expect(queue.next()).toEqual({ buildId: 'b2', release: 'r1' });
  });
});
