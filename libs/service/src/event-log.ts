// The service's own place in the event log: its publisher (hash chain and key under the data dir)
// and the ServiceStarted / ServiceStopped events that bracket each run (PCI-DSS 10.2.1.6).
import * as os from 'node:os';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import type { EventDraft } from '@rebootless/events';
import { EVENTS_TOPIC, EventPublisher, kafkaClient } from '@rebootless/kafka';
import { formatHostPort, type HostPort } from './config';

/** Inject the service's publisher with `@Inject(EVENT_PUBLISHER) events: EventPublisher`. */
export const EVENT_PUBLISHER = Symbol('rebootless.event-publisher');

export class EventLogUnavailable extends Error {}

export function serviceActor(name: string): events.Actor {
  return { kind: events.ActorKind.ACTOR_KIND_SERVICE, id: name, origin: os.hostname() };
}

/** Opens the publisher, after checking the events topic exists (it is never auto-created). */
export async function openServiceEventLog(options: {
  name: string;
  producerId: string;
  brokers: readonly HostPort[];
  dataDir: string;
  topic?: string;
  /** Told about the publisher's recoveries (batches settled, withdrawn, sent again). */
  log?: (line: string) => void;
}): Promise<EventPublisher> {
  const brokers = options.brokers.map(formatHostPort);
  const topic = options.topic ?? EVENTS_TOPIC;
  const where = `Kafka at ${brokers.join(',')} (KAFKA_BROKERS)`;
  // A short-lived client with few retries, so a missing broker is reported in seconds.
  const admin = kafkaClient(brokers, `rebootless-${options.name}-probe`, 3).admin();
  try {
    await admin.connect();
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) {
      throw new EventLogUnavailable(
        `topic ${topic} (EVENTS_TOPIC) does not exist on ${where}: create it with "npm run kafka:topic"`,
      );
    }
  } catch (error) {
    if (error instanceof EventLogUnavailable) throw error;
    throw new EventLogUnavailable(`cannot reach ${where}: ${(error as Error).message}`);
  } finally {
    await admin.disconnect();
  }
  return EventPublisher.open({
    kafka: kafkaClient(brokers, `rebootless-${options.name}`),
    topic,
    producerId: options.producerId,
    stateDir: path.join(options.dataDir, 'chain'),
    actor: serviceActor(options.name),
    ...(options.log ? { log: options.log } : {}),
  });
}

export function serviceStarted(name: string, producerId: string, address: string): EventDraft {
  return {
    stream: `producer/${producerId}`,
    actor: serviceActor(name),
    payload: {
      type: 'ServiceStarted',
      data: {
        service: name,
        version: process.env['npm_package_version'] ?? '0.1.0',
        instance: `${os.hostname()}:${process.pid}`,
        hostname: os.hostname(),
        pid: process.pid,
        listenAddress: address,
      },
    },
  };
}

export function serviceStopped(name: string, producerId: string, reason: string): EventDraft {
  return {
    stream: `producer/${producerId}`,
    actor: serviceActor(name),
    payload: { type: 'ServiceStopped', data: { service: name, instance: `${os.hostname()}:${process.pid}`, reason } },
  };
}
