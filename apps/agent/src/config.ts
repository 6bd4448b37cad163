import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import {
  hostPort,
  hostPortList,
  integer,
  oneOf,
  path,
  serviceSettings,
  setting,
  text,
  type ConfigOf,
  type ConfigSpec,
  type Parser,
} from '@rebootless/service';

export const SERVICE_NAME = 'agent';

/** The host's identity: systemd's machine id where there is one, else the hostname. */
function defaultHostId(): string {
  try {
    const id = readFileSync('/etc/machine-id', 'utf8').trim();
    if (id) return id;
  } catch {
    // No machine id (containers, minimal systems): fall back below.
  }
  return hostname();
}

/** "env=prod,rack=r12": the labels rollouts select hosts by. */
function labels(): Parser<Record<string, string>> {
  return {
    expected: 'comma-separated key=value pairs, e.g. env=prod,rack=r12',
    parse(raw) {
      const out: Record<string, string> = {};
      for (const pair of raw
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p !== '')) {
        const at = pair.indexOf('=');
        if (at <= 0) return undefined;
        out[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
      }
      return out;
    },
  };
}

/** The builder's raw 32-byte Ed25519 key, as 64 hex digits or base64. */
function publicKey(): Parser<Buffer> {
  return {
    expected: "the builder's raw 32-byte Ed25519 public key, as 64 hex digits or base64",
    parse(raw) {
      const text = raw.trim();
      const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
      return key.length === 32 ? key : undefined;
    },
  };
}

export const agentSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'AGENT', defaultPort: 7454 }),
  hostId: setting({
    env: 'AGENT_HOST_ID',
    parser: text(),
    default: defaultHostId(),
    description: "this host's id in the fleet; the agent's events are signed as producer agent/<host id>",
  }),
  labels: setting({
    env: 'AGENT_LABELS',
    parser: labels(),
    default: '',
    description: 'labels rollouts select hosts by (key=value, comma-separated)',
  }),
  dispatcherAddress: setting({
    env: 'AGENT_DISPATCHER_ADDRESS',
    parser: hostPortList(),
    description:
      "the dispatcher's AgentGateway (host:port), or its instances' (comma-separated: the agent moves to the next when its stream drops); unset: the agent works alone",
  }),
  builderAddress: setting({
    env: 'AGENT_BUILDER_ADDRESS',
    parser: hostPort(),
    description:
      "the builder's BuildService (host:port): with a dispatcher, asked for an artifact only when the dispatcher's site cache cannot serve it (ADR 0026); without one, where every artifact is fetched",
  }),
  builderPublicKey: setting({
    env: 'AGENT_BUILDER_PUBLIC_KEY',
    parser: publicKey(),
    description: 'the pinned builder key: only artifacts it signed are ever loaded; unset: every apply is refused',
  }),
  eventSink: setting({
    env: 'AGENT_EVENT_SINK',
    parser: oneOf(['kafka', 'gateway'] as const),
    default: 'gateway',
    description:
      "gateway: relay events through the dispatcher, whose gateway binds the agent's key (AgentKeyBound); " +
      "kafka: write them straight to KAFKA_BROKERS, where no reader counts them, as nobody vouched for the key (tests that read the agent's own output)",
  }),
  reapply: setting({
    env: 'AGENT_REAPPLY',
    parser: oneOf(['at-start', 'never'] as const),
    default: 'at-start',
    description: 'after a reboot, apply the desired patches again (at-start) or wait for the dispatcher (never)',
  }),
  transitionTimeoutMs: setting({
    env: 'AGENT_TRANSITION_TIMEOUT_MS',
    parser: integer(100, 3_600_000),
    default: '60000',
    description:
      'a patch transition still running after this long is reversed (never forced without the command saying so)',
  }),
  startedHoldMs: setting({
    env: 'AGENT_STARTED_HOLD_MS',
    parser: integer(0, 60_000),
    default: '2000',
    description:
      'PatchApplyStarted waits this long, on disk, for the fact that ends the apply, to share its seal and delivery (docs/adr/0030); 0 sends it at once',
  }),
  kernelSocket: setting({
    env: 'AGENT_KERNEL_SOCKET',
    parser: path(),
    description:
      'a simulated kernel served on this Unix socket (tests, fleet simulation); unset: the real kernel through /sys/kernel/livepatch',
  }),
  controlSocket: setting({
    env: 'AGENT_CONTROL_SOCKET',
    parser: path(),
    description:
      "also serve AgentControl on this Unix socket (e.g. /run/rebootless/agent.sock): mode 0600 in a 0700 directory, so only root (the agent's user) may ask; unset: the TCP port alone",
  }),
  sysfsRoot: setting({
    env: 'AGENT_SYSFS_ROOT',
    parser: path(),
    default: '/',
    description: 'prefix of /sys and /proc for the real kernel port',
  }),
} satisfies ConfigSpec;

export type AgentConfig = ConfigOf<typeof agentSettings>;
