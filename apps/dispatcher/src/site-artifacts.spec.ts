import { ServeSlots } from './site-artifacts';

async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('ServeSlots', () => {
  it('given two slots taken, when a third stream asks, then it waits until one is released, in arrival order', async () => {
    const slots = new ServeSlots(2);
    const first = await slots.acquire();
    await slots.acquire();
    const third = slots.acquire();
    const fourth = slots.acquire();
    expect(await settled(third)).toBe(false);
    first();
    expect(await settled(third)).toBe(true);
    expect(await settled(fourth)).toBe(false);
  });

  it('given a slot released twice (finish, then close), then it frees one slot, not two', async () => {
    const slots = new ServeSlots(1);
    const release = await slots.acquire();
    release();
    release();
    await slots.acquire();
    expect(await settled(slots.acquire())).toBe(false);
  });
});
