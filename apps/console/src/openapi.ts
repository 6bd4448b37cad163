// The API's description (OpenAPI 3.0), served at /api/v1/openapi.json. The contract test walks
// it and calls every route; the validator from npm checks it is well formed.
import { VERDICTS } from './verdict';

const ERROR_CODES = ['BAD_REQUEST', 'UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT', 'UNAVAILABLE', 'INTERNAL'];

const errorRef = { $ref: '#/components/responses/Error' };
const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [String(s), errorRef]));
const ok = (description: string, schema: object = { type: 'object' }) => ({
  description,
  content: { 'application/json': { schema } },
});
const queryParam = (name: string, description: string, schema: object = { type: 'string' }) => ({
  name,
  in: 'query',
  required: false,
  description,
  schema,
});
const pathParam = (name: string, description: string) => ({
  name,
  in: 'path',
  required: true,
  description,
  schema: { type: 'string' },
});
const READ_ERRORS = errors(400, 401, 403);
const fleetParams = [
  queryParam('label', 'labels that must all match, key=value[,key=value]'),
  queryParam('kernel', 'kernel release, e.g. 6.1.0-18-cloud-amd64'),
  queryParam('cve', 'hosts exposed to this CVE, e.g. CVE-2024-1086'),
  queryParam('verdict', 'one verdict', {
    type: 'string',
    enum: [...VERDICTS],
  }),
];
const rolloutId = pathParam('rolloutId', 'the rollout id');
const hostId = pathParam('hostId', 'the host id');
const actionBody = (properties: object) => ({
  required: false,
  content: {
    'application/json': { schema: { type: 'object', properties } },
    'application/x-www-form-urlencoded': { schema: { type: 'object', properties } },
  },
});
const action = (summary: string, properties: object = { reason: { type: 'string' } }) => ({
  post: {
    summary,
    parameters: [rolloutId],
    requestBody: actionBody(properties),
    responses: {
      '200': ok('the rollout after the action', { $ref: '#/components/schemas/Rollout' }),
      ...errors(400, 401, 403, 404, 409),
    },
  },
});

export function openApiDocument(): object {
  return {
    openapi: '3.0.3',
    info: {
      title: 'rebootless console API',
      version: '1.0.0',
      description:
        'The fleet, hosts, rollouts, exposure, compliance, audit log, builds and patches, as the ledger, dispatcher and builder tell them, acting as the signed-in person. ' +
        'Sign in with POST /session (a session cookie; actions then need the X-CSRF-Token header) or send "Authorization: Bearer <token>". ' +
        'Every error has the shape of the Error schema.',
    },
    servers: [{ url: '/api/v1' }],
    components: {
      securitySchemes: {
        session: { type: 'apiKey', in: 'cookie', name: 'rebootless_session' },
        bearer: { type: 'http', scheme: 'bearer' },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          additionalProperties: false,
          properties: {
            error: {
              type: 'object',
              required: ['status', 'code', 'message'],
              additionalProperties: false,
              properties: {
                status: { type: 'integer', description: 'the HTTP status, repeated' },
                code: { type: 'string', enum: ERROR_CODES },
                message: { type: 'string', description: 'what is wrong, in a sentence' },
              },
            },
          },
        },
        Rollout: {
          type: 'object',
          required: ['rolloutId', 'state'],
          properties: {
            rolloutId: { type: 'string' },
            state: { type: 'string' },
            waves: { type: 'array', items: { type: 'object' } },
          },
        },
      },
      responses: {
        Error: {
          description: 'the request failed; the body says why',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
    },
    security: [{ session: [] }, { bearer: [] }],
    paths: {
      '/openapi.json': {
        get: { summary: 'this document', security: [], responses: { '200': ok('the OpenAPI document') } },
      },
      '/session': {
        post: {
          summary: 'sign in with a token (sets the session cookie)',
          security: [],
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: { type: 'object', required: ['token'], properties: { token: { type: 'string' } } },
              },
            },
          },
          responses: {
            '201': ok('signed in', {
              type: 'object',
              required: ['subject', 'roles', 'csrf_token'],
              properties: {
                subject: { type: 'string' },
                roles: { type: 'array', items: { type: 'string' } },
                expires_at: { type: 'string', format: 'date-time' },
                csrf_token: { type: 'string' },
              },
            }),
            ...errors(400, 401),
          },
        },
        get: { summary: 'who is signed in', responses: { '200': ok('the session'), ...errors(401) } },
        delete: { summary: 'sign out', responses: { '204': { description: 'signed out' }, ...errors(401, 403) } },
      },
      '/hosts': {
        get: {
          summary: 'the fleet, one page, each host with its verdict',
          parameters: [...fleetParams, queryParam('page_token', 'from next_page_token')],
          responses: {
            '200': ok('a page of hosts', {
              type: 'object',
              required: ['hosts', 'next_page_token'],
              properties: { hosts: { type: 'array', items: { type: 'object' } }, next_page_token: { type: 'string' } },
            }),
            ...READ_ERRORS,
          },
        },
      },
      '/fleet/counts': {
        get: {
          summary: 'hosts per verdict over the filtered fleet',
          parameters: fleetParams.slice(0, 3),
          responses: { '200': ok('counts', { type: 'object', required: ['total'] }), ...READ_ERRORS },
        },
      },
      '/hosts/{hostId}': {
        get: {
          summary: 'one host: facts and stack now',
          parameters: [hostId],
          responses: { '200': ok('the host'), ...errors(400, 401, 403, 404) },
        },
      },
      '/hosts/{hostId}/stack': {
        get: {
          summary: "the host's patch stack at an instant",
          parameters: [
            hostId,
            queryParam('at', 'RFC 3339 instant; default now', { type: 'string', format: 'date-time' }),
          ],
          responses: { '200': ok('the stack and the event it rests on'), ...errors(400, 401, 403, 404) },
        },
      },
      '/hosts/{hostId}/history': {
        get: {
          summary: "the host's events, oldest first",
          parameters: [hostId, queryParam('page_token', 'from next_page_token')],
          responses: { '200': ok('events'), ...errors(400, 401, 403, 404) },
        },
      },
      '/rollouts': {
        get: {
          summary: 'rollouts, newest first',
          parameters: [queryParam('page_token', 'from next_page_token')],
          responses: { '200': ok('rollouts'), ...READ_ERRORS },
        },
        post: {
          summary:
            'create a rollout (operator); approval before the first wave unless approval_before_first_wave is false',
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['patch_id', 'version'],
                  properties: {
                    patch_id: { type: 'string' },
                    version: { type: 'string' },
                    host_ids: { type: 'array', items: { type: 'string' } },
                    labels: { type: 'object', additionalProperties: { type: 'string' } },
                    kernel_releases: { type: 'array', items: { type: 'string' } },
                    approval_before_first_wave: { type: 'boolean', default: true },
                    soak_seconds: { type: 'integer', minimum: 0 },
                  },
                },
              },
            },
          },
          responses: {
            '201': ok('the rollout created', { $ref: '#/components/schemas/Rollout' }),
            ...errors(400, 401, 403, 404, 409),
          },
        },
      },
      '/rollouts/{rolloutId}': {
        get: {
          summary: 'one rollout with its timeline',
          parameters: [rolloutId],
          responses: { '200': ok('the rollout'), ...errors(400, 401, 403, 404) },
        },
      },
      '/rollouts/{rolloutId}/events': {
        get: {
          summary:
            'the rollout as it changes (Server-Sent Events: one "rollout" event per change, "end" once the rollout has ended, "failed" if the dispatcher stopped answering)',
          parameters: [rolloutId],
          responses: {
            '200': { description: 'an event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
            ...errors(400, 401, 403, 404),
          },
        },
      },
      '/rollouts/{rolloutId}/pause': action('pause (operator)'),
      '/rollouts/{rolloutId}/resume': action('resume (operator)', {}),
      '/rollouts/{rolloutId}/abort': action('abort (operator)'),
      '/rollouts/{rolloutId}/rollback': action('roll back (operator)'),
      '/rollouts/{rolloutId}/approve': action('approve the waiting wave (approver)', {
        wave_index: { type: 'integer', minimum: 0 },
        comment: { type: 'string' },
      }),
      '/exposure': {
        get: {
          summary: 'per CVE: hosts exposed and since when, and the count over time',
          parameters: [queryParam('cve', 'one CVE')],
          responses: { '200': ok('exposure', { type: 'object', required: ['cves'] }), ...READ_ERRORS },
        },
      },
      '/compliance': {
        get: {
          summary: 'the PCI-DSS 6.3.3 report as of an instant',
          parameters: [
            queryParam('as_of', 'RFC 3339 instant; default now', { type: 'string', format: 'date-time' }),
            queryParam('deadline_days', 'days allowed (default 30)', { type: 'integer', minimum: 1 }),
            queryParam('format', 'json or csv', { type: 'string', enum: ['json', 'csv'] }),
          ],
          responses: {
            '200': {
              description: 'the report',
              content: {
                'application/json': { schema: { type: 'object' } },
                'text/csv': { schema: { type: 'string' } },
              },
            },
            ...READ_ERRORS,
          },
        },
      },
      '/audit': {
        get: {
          summary: 'the audit log, searched',
          parameters: [
            queryParam('from', 'RFC 3339', { type: 'string', format: 'date-time' }),
            queryParam('to', 'RFC 3339', { type: 'string', format: 'date-time' }),
            queryParam('host_id', 'one host'),
            queryParam('actor_id', 'who caused it'),
            queryParam('type', 'event type names, comma-separated'),
            queryParam('correlation_id', 'a rollout or build id'),
            queryParam('limit', 'at most this many (default 500)', { type: 'integer', minimum: 1 }),
          ],
          responses: { '200': ok('records', { type: 'object', required: ['records'] }), ...READ_ERRORS },
        },
      },
      '/patches': {
        get: { summary: 'published and retracted patches', responses: { '200': ok('patches'), ...READ_ERRORS } },
      },
      '/builds': { get: { summary: 'builds with their stages', responses: { '200': ok('builds'), ...READ_ERRORS } } },
      '/builds/{buildId}': {
        get: {
          summary: 'one build with its diagnostics',
          parameters: [pathParam('buildId', 'the build id')],
          responses: { '200': ok('the build'), ...errors(400, 401, 403, 404) },
        },
      },
    },
  };
}
