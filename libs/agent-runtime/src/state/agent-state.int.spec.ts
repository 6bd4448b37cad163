// AgentStateFile on a real directory: staged changes reach the disk with the next write, and a
// write that fails leaves memory as the disk has it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentStateFile } from './agent-state';

let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-state-'));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const onDisk = () => new AgentStateFile(dir).data;

describe('AgentStateFile', () => {
  it('keeps a staged change in memory until the next update or flush writes it with that update', () => {
    const state = new AgentStateFile(dir);
    state.stage((s) => void s.seenCommands.push({ id: 'cmd-1', until: 1 }));
    expect(state.data.seenCommands).toEqual([{ id: 'cmd-1', until: 1 }]);
    expect(onDisk().seenCommands).toEqual([]);
    state.update((s) => void (s.enrolled = true));
    expect(onDisk()).toMatchObject({ enrolled: true, seenCommands: [{ id: 'cmd-1', until: 1 }] });
    state.stage((s) => void (s.cleanStop = true));
    state.flush();
    expect(onDisk().cleanStop).toBe(true);
  });

  it('puts back what the disk holds when a write fails', () => {
    const state = new AgentStateFile(dir);
    state.update((s) => void (s.enrolled = true));
    // The temporary file cannot be created: a directory is in its place.
    fs.mkdirSync(`${state.path}.${process.pid}.tmp`);
    expect(() => state.update((s) => void (s.lastBootId = 'boot-2'))).toThrow();
    expect(state.data.lastBootId).toBeUndefined();
    expect(state.data.enrolled).toBe(true);
    fs.rmdirSync(`${state.path}.${process.pid}.tmp`);
    state.update((s) => void (s.lastBootId = 'boot-3'));
    expect(onDisk()).toMatchObject({ enrolled: true, lastBootId: 'boot-3' });
  });
});
