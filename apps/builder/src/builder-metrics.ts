// The builder's metrics (ADR 0019): kernel builds by state and stage (a build is one per kernel
// release it targets), read from the coordinator when a scrape or an export asks.
import { builder } from '@rebootless/contracts';
import { rebootlessMeter } from '@rebootless/telemetry';
import type { BuildCoordinator } from './build-coordinator';

export function registerBuilderMetrics(coordinator: BuildCoordinator): void {
  const meter = rebootlessMeter();
  const kernels = meter.createObservableGauge('rebootless.builds', {
    description: 'kernel builds by state and stage (the stage running, or the one that failed)',
  });
  kernels.addCallback((result) => {
    const counts = new Map<string, { state: string; stage: string; n: number }>();
    let pageToken = '';
    do {
      const page = coordinator.list({ pageSize: 1000, pageToken, patchId: '', states: [] });
      for (const b of page.builds)
        for (const k of b.kernels) {
          const state = (builder.BuildState[k.state] ?? 'unknown').replace(/^BUILD_STATE_/, '').toLowerCase();
          const key = `${state}/${k.stage}`;
          const known = counts.get(key);
          if (known) known.n += 1;
          else counts.set(key, { state, stage: k.stage, n: 1 });
        }
      pageToken = page.nextPageToken;
    } while (pageToken);
    for (const c of counts.values()) result.observe(c.n, { state: c.state, stage: c.stage });
  });
  meter
    .createObservableCounter('rebootless.artifacts.served', {
      description:
        'artifacts served in full by FetchArtifact, by digest and caller (service: a dispatcher site cache; host: an agent itself)',
    })
    .addCallback((result) => {
      for (const s of coordinator.artifactServes.values()) result.observe(s.n, { digest: s.digest, caller: s.caller });
    });
}
