// ListBuilds paging: newest first (build ids are UUIDv7, so they sort by submission time); the
// page token is the last build id of the previous page, so builds submitted meanwhile neither
// shift nor repeat what a caller pages through.
import type { builder } from '@rebootless/contracts';
import { visibleState, type BuildRecord } from './build-record';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

export class InvalidPageTokenError extends Error {
  constructor(token: string) {
    super(`page_token: ${JSON.stringify(token.slice(0, 80))} is not a token this builder handed out`);
    this.name = 'InvalidPageTokenError';
  }
}

const TOKEN_PREFIX = 'after:';

export function pageOf(
  records: Iterable<BuildRecord>,
  request: Pick<builder.ListBuildsRequest, 'pageSize' | 'pageToken' | 'patchId' | 'states'>,
): { records: BuildRecord[]; nextPageToken: string } {
  let after: string | undefined;
  if (request.pageToken) {
    const decoded = Buffer.from(request.pageToken, 'base64url').toString('utf8');
    if (!decoded.startsWith(TOKEN_PREFIX)) throw new InvalidPageTokenError(request.pageToken);
    after = decoded.slice(TOKEN_PREFIX.length);
  }
  const size = Math.min(request.pageSize > 0 ? request.pageSize : DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  const states = new Set(request.states ?? []);
  const matching = [...records]
    .filter((r) => !request.patchId || r.patchId === request.patchId)
    .filter((r) => states.size === 0 || states.has(visibleState(r)))
    .filter((r) => after === undefined || r.buildId < after)
    .sort((a, b) => (a.buildId < b.buildId ? 1 : a.buildId > b.buildId ? -1 : 0));
  const page = matching.slice(0, size);
  const last = page[page.length - 1];
  return {
    records: page,
    nextPageToken:
      matching.length > size && last ? Buffer.from(`${TOKEN_PREFIX}${last.buildId}`).toString('base64url') : '',
  };
}
