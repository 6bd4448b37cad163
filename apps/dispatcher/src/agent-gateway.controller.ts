import { Controller, Inject, Logger } from '@nestjs/common';
import { status, type Metadata, type ServerDuplexStream } from '@grpc/grpc-js';
import { GrpcMethod, GrpcStreamCall, RpcException } from '@nestjs/microservices';
import { Observable } from 'rxjs';
import {
  ArtifactUpstreamError,
  InvalidDigestError,
  isDigest,
  type ArtifactCache,
  type ServedArtifact,
} from '@rebootless/artifacts';
import { dispatcher } from '@rebootless/contracts';
import { principalOf } from '@rebootless/trust';
import { EVENT_PUBLISHER, callDenied } from '@rebootless/service';
import type { EventPublisher } from '@rebootless/kafka';
import { agentKeyBindings } from './agent-key-binding';
import type { AgentStream } from './agent-connections';
import { ArtifactsNotServedError, DISPATCHER_ERRORS, PermissionError } from './dispatcher-errors';
import { EventRelay } from './event-relay';
import { RolloutEngine } from './rollout-engine';
import { SERVE_SLOTS, SITE_ARTIFACTS, type ServeSlots } from './site-artifacts';

/** How long events an agent sent before wait for the log to be read to its end, before they are refused for now. */
const SENT_BEFORE_LOG_WAIT_MS = 10_000;

/**
 * Serves rebootless.dispatcher.v1.AgentGateway: one long-lived stream per agent. The agent says
 * hello first; every message it sends is acknowledged by id once what it carried is durable
 * (relayed events: written to Kafka), and commands go back on the same stream.
 */
@Controller()
export class AgentGatewayController {
  private readonly logger = new Logger('AgentGateway');

  constructor(
    @Inject(RolloutEngine) private readonly engine: RolloutEngine,
    @Inject(EventRelay) private readonly relay: EventRelay,
    @Inject(EVENT_PUBLISHER) private readonly events: EventPublisher,
    @Inject(SITE_ARTIFACTS) private readonly artifacts: ArtifactCache | null,
    @Inject(SERVE_SLOTS) private readonly serveSlots: ServeSlots,
  ) {}

  /**
   * The module from the site cache (ADR 0026): the builder's header as signed, then the bytes.
   * The caller's certificate was checked by the access table (any host of the deployment).
   */
  @GrpcMethod('AgentGateway', 'fetchArtifact')
  fetchArtifact(
    request: dispatcher.FetchArtifactRequest,
    _metadata?: Metadata,
    call?: { once(event: 'finish' | 'cancelled' | 'close', listener: () => void): unknown },
  ): Observable<dispatcher.FetchArtifactResponse> {
    const digest = request.artifactDigest;
    return new Observable((subscriber) => {
      let unsubscribed = false;
      let served: ServedArtifact | undefined;
      let release: (() => void) | undefined;
      let ended = false;
      const end = () => {
        ended = true;
        release?.();
      };
      // The slot is held until the stream is sent (or given up): its module is in memory until then.
      for (const event of ['finish', 'cancelled', 'close'] as const) call?.once(event, end);
      void (async () => {
        const releaseSlot = await this.serveSlots.acquire();
        release = releaseSlot;
        if (ended || unsubscribed || !call) releaseSlot();
        if (ended || unsubscribed) return;
        if (!isDigest(digest)) throw new InvalidDigestError(digest);
        if (!this.artifacts) {
          throw new ArtifactsNotServedError(
            'this dispatcher serves no artifacts (DISPATCHER_BUILDER_ADDRESS is unset): fetch from the builder',
          );
        }
        served = await this.artifacts.serve(digest);
        if (unsubscribed) return served.close();
        subscriber.next({ header: { manifest: served.manifestBytes, manifestSignature: served.signature } });
        for await (const chunk of served.chunks()) {
          if (unsubscribed) return;
          subscriber.next({ chunk });
        }
        subscriber.complete();
      })().catch((error: unknown) => {
        release?.();
        subscriber.error(this.artifactRefusal(error, digest));
      });
      return () => {
        unsubscribed = true;
        void served?.close();
      };
    });
  }

  private artifactRefusal(error: unknown, digest: string): RpcException {
    if (!(error instanceof ArtifactUpstreamError)) {
      return DISPATCHER_ERRORS.toRpcException(error, `FetchArtifact ${digest}`, this.logger);
    }
    switch (error.failure) {
      case 'not-found':
        return DISPATCHER_ERRORS.refusal(status.NOT_FOUND, 'ARTIFACT_NOT_FOUND', error.message);
      case 'retracted':
        return DISPATCHER_ERRORS.refusal(status.FAILED_PRECONDITION, 'PATCH_RETRACTED', error.message);
      case 'unavailable':
        return DISPATCHER_ERRORS.refusal(status.UNAVAILABLE, 'BUILDER_UNAVAILABLE', error.message);
      case 'refused':
        this.logger.error(`FetchArtifact ${digest}: ${error.message}`);
        return DISPATCHER_ERRORS.refusal(status.UNAVAILABLE, 'BUILDER_ANSWER_REFUSED', error.message);
    }
  }

  /**
   * The agent's stream, on grpc-js's call itself: a dispatcher holds one per agent (50,000 at a
   * time at 100,000 hosts, ADR 0029), and Nest's Observable wrapping of each cost about 2.5 KiB.
   */
  @GrpcStreamCall('AgentGateway', 'connect')
  connect(call: ServerDuplexStream<dispatcher.ConnectRequest, dispatcher.ConnectResponse>): void {
    const metadata = call.metadata;
    // With TLS the certificate names the host; on an insecure server the hello is taken at its word.
    const certified = principalOf(metadata)?.identity;
    const certificateFingerprint = (call.getAuthContext?.().sslPeerCertificate?.fingerprint256 ?? '')
      .replace(/:/g, '')
      .toLowerCase();
    let hostId: string | undefined;
    let ended = false;
    // Relayed batches are written one after another, so the agent's chain order is kept.
    let relaying: Promise<void> = Promise.resolve();
    const stream: AgentStream = {
      send: (message) => {
        if (!ended) call.write(message);
      },
      replaced: () => finish(),
      untrusted: (why) => {
        this.logger.warn(`closing the stream of ${hostId ?? 'an agent'}: ${why}`);
        finish(DISPATCHER_ERRORS.refusal(status.UNAUTHENTICATED, 'AGENT_KEY_REVOKED', why));
      },
    };
    const finish = (error?: RpcException) => {
      if (ended) return;
      ended = true;
      if (hostId) {
        this.engine.agents.detach(hostId, stream, Date.now());
        this.engine.agentDisconnected(hostId);
      }
      // grpc-js ends the call with the status of the error it is given (what Nest would send).
      if (error) call.emit('error', error.getError());
      else if (!call.cancelled) call.end();
    };
    const refuse = (code: status, reason: string, message: string, field = '') => {
      // An agent speaking for another host, or with a revoked key, is audited like any refused call (issue 7).
      if (code === status.PERMISSION_DENIED || code === status.UNAUTHENTICATED) {
        const who = certified ? `${certified.kind}:${certified.id}` : 'no certificate identity';
        const denied = callDenied('dispatcher', {
          method: '/rebootless.dispatcher.v1.AgentGateway/Connect',
          code: code === status.PERMISSION_DENIED ? 'PERMISSION_DENIED' : 'UNAUTHENTICATED',
          reason: message,
          subject: who,
          certificateIdentity: who,
          peer: call.getPeer(),
        });
        this.events
          .publish(denied)
          .catch((e: unknown) => this.logger.error(`could not record a denied call: ${String(e)}`));
      }
      finish(DISPATCHER_ERRORS.refusal(code, reason, message, field));
    };
    const ack = (messageId: string) => stream.send({ ack: { messageId } });

    call.on('data', (request: dispatcher.ConnectRequest) => {
      if (ended) return;
      if (!request.hello && !request.inventory && !request.commandResult && !request.relayEvents) {
        return refuse(
          status.INVALID_ARGUMENT,
          'EMPTY_MESSAGE',
          'the message carries no payload (hello, inventory, command_result or relay_events)',
        );
      }
      if (request.hello) {
        const id = request.hello.facts?.hostId ?? '';
        if (!id)
          return refuse(
            status.INVALID_ARGUMENT,
            'INVALID_FIELD',
            'hello.facts.host_id: is required',
            'hello.facts.host_id',
          );
        if (certified?.kind === 'host' && certified.id !== id) {
          return refuse(
            status.PERMISSION_DENIED,
            'NOT_THIS_HOST',
            `the certificate names host ${certified.id}, not ${id}`,
          );
        }
        if (hostId && hostId !== id)
          return refuse(status.INVALID_ARGUMENT, 'INVALID_FIELD', `hello: this stream is ${hostId}'s`, 'hello');
        // An agent whose key was revoked stays away until it comes back with a new one.
        const revoked = this.engine.helloRefusal(id, request.hello.agentPublicKey);
        if (revoked) return refuse(status.UNAUTHENTICATED, 'AGENT_KEY_REVOKED', revoked);
        stream.agentKey = request.hello.agentPublicKey;
        hostId = id;
        this.engine.fleet.observeFacts(request.hello.facts!);
        this.engine.agents.attach(id, stream);
        ack(request.messageId);
        this.engine.agentConnected(id);
        return;
      }
      if (!hostId) return refuse(status.FAILED_PRECONDITION, 'HELLO_FIRST', 'the agent must say hello first');
      const host = hostId;
      if (request.inventory) {
        if (request.inventory.facts && request.inventory.facts.hostId !== host) {
          return refuse(
            status.INVALID_ARGUMENT,
            'INVALID_FIELD',
            `inventory.facts.host_id: ${request.inventory.facts.hostId} is not ${host}`,
            'inventory.facts.host_id',
          );
        }
        if (request.inventory.facts) this.engine.fleet.observeFacts(request.inventory.facts, request.inventory.patches);
        return ack(request.messageId);
      }
      if (request.commandResult) {
        // The outcome that counts is the agent's signed event in the log; this is its echo.
        const r = request.commandResult;
        this.engine.agents.answered(host, r);
        this.engine.hostCommandAnswered(host, r);
        if (r.outcome === dispatcher.CommandOutcome.COMMAND_OUTCOME_REJECTED) {
          this.logger.warn(`${host} refused command ${r.commandId} at ${r.stage}: ${r.error}`);
        }
        return ack(request.messageId);
      }
      if (request.relayEvents) {
        const { envelopes, sentBefore } = request.relayEvents;
        relaying = relaying.then(async () => {
          if (ended) return;
          try {
            // The gateway vouches for the agent's epoch key (docs/adr/0012): its binding goes on the
            // host's stream, sealed, before the epoch start it names, so readers meet it first.
            this.relay.check(host, envelopes, (body) => this.engine.relayRefusal(host, body));
            // Sent before without an answer: the instance that wrote them may have died just after,
            // and this one's follower may not have read that yet. The log is read to its end first.
            if (sentBefore && !(await this.engine.logReadToNow(SENT_BEFORE_LOG_WAIT_MS))) {
              return refuse(
                status.UNAVAILABLE,
                'EVENT_LOG_BEHIND',
                `events sent before were not written: the dispatcher could not read the event log to its end within ${SENT_BEFORE_LOG_WAIT_MS} ms to see which of them it holds; send them again`,
              );
            }
            // Already in the log (written by an instance that died before it acknowledged them):
            // written again they would be copies, which every reader reports. Acknowledged as written.
            const fresh = envelopes.filter((e) => !this.engine.alreadyInLog(e));
            if (fresh.length < envelopes.length)
              this.logger.log(
                `${host}: ${envelopes.length - fresh.length} event(s) sent again are in the log already; not written twice`,
              );
            const bindings = agentKeyBindings(host, fresh, {
              certificateFingerprint,
              certificateIdentity: certified?.kind === 'host' ? certified.id : '',
            });
            if (bindings.length > 0) await this.events.publish(bindings);
            // The agent's traceparent (the work that recorded these events): the producer spans join it.
            await this.relay.relay(host, fresh, request);
            ack(request.messageId);
          } catch (error) {
            if (error instanceof PermissionError)
              return refuse(status.PERMISSION_DENIED, 'RELAY_REFUSED', error.message);
            // Not acknowledged: the agent keeps the events in its outbox and sends them again.
            this.logger.error(`relaying ${envelopes.length} event(s) of ${host} failed: ${String(error)}`);
            refuse(
              status.UNAVAILABLE,
              'EVENT_LOG_UNAVAILABLE',
              'the dispatcher could not write the events to the log; send them again',
            );
          }
        });
        return;
      }
    });
    call.on('end', () => finish());
    call.on('cancelled', () => finish());
    call.on('error', () => finish());
  }
}
