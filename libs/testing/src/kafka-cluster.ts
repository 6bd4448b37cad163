// A three-node KRaft cluster of the tests' own (scripts/kafka-runtime.cjs), on free loopback
// ports in a temp dir, for the fault tests: nodes can be SIGKILLed, frozen and started again.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { REPO_ROOT } from './process';

interface ClusterRuntime {
  findFreePorts(count: number): Promise<number[]>;
  startCluster(o: object): Promise<{ brokers: string; nodes: { id: number; pid: number }[] }>;
  startClusterNode(o: object, id: number): Promise<{ id: number; pid: number }>;
  stopCluster(o: object): Promise<unknown>;
}

export interface TestCluster {
  /** host:port of each node. */
  readonly brokers: string[];
  /** A node's JVM, by node id (1-3). */
  pid(node: number): number;
  /** SIGKILL, SIGSTOP or SIGCONT to a node's JVM. */
  signal(node: number, signal: 'SIGKILL' | 'SIGSTOP' | 'SIGCONT'): void;
  /** Starts a node again (after a SIGKILL) and resolves when it serves. */
  restart(node: number): Promise<void>;
  /** Stops every node and removes the data dirs. */
  stop(): Promise<void>;
}

export async function startTestCluster(): Promise<TestCluster> {
  const runtime = require(path.join(REPO_ROOT, 'scripts', 'kafka-runtime.cjs')) as ClusterRuntime;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-cluster-'));
  const free = await runtime.findFreePorts(6);
  // detached: false keeps the JVMs in the test's process group, so Ctrl-C stops them too.
  const options = {
    dataDir: dir,
    ports: [0, 1, 2].map((i) => ({ port: free[i]!, controllerPort: free[i + 3]! })),
    detached: false,
  };
  const started = await runtime.startCluster(options);
  const pids = new Map(started.nodes.map((n) => [n.id, n.pid]));
  return {
    brokers: started.brokers.split(','),
    pid: (node) => pids.get(node)!,
    signal: (node, signal) => process.kill(pids.get(node)!, signal),
    async restart(node) {
      pids.set(node, (await runtime.startClusterNode(options, node)).pid);
    },
    async stop() {
      for (const pid of pids.values()) {
        try {
          process.kill(pid, 'SIGCONT'); // a frozen JVM cannot hear SIGTERM
        } catch {
          // gone already
        }
      }
      await runtime.stopCluster(options);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A client for the fault tests: short timeouts, so that a frozen broker outlasts them (5 s
 * requests against a 12 s freeze) and a dead one is given up on quickly, and quiet.
 */
export function faultTestClient(brokers: string[], clientId: string): Kafka {
  return new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.NOTHING,
    requestTimeout: 5_000,
    connectionTimeout: 2_000,
    retry: { retries: 10, initialRetryTime: 200, maxRetryTime: 3_000 },
  });
}
