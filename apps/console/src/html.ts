// Server-rendered pages (ADR 0017): a tagged template that escapes every interpolated value
// unless it is already Html, so nothing a host, an event or a user typed can become markup.
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escape(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escape(value);
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((value, i) => (out += render(value) + strings[i + 1]!));
  return new Html(out);
}

/** A URL query from parameters, leaving empty ones out. */
export function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export interface PageUser {
  readonly subject: string;
  readonly roles: readonly string[];
  readonly csrf: string;
}

const STYLE = `
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfe1ff;text-decoration:none}header .who{margin-left:auto;font-size:.9rem}
main{padding:1rem 1.5rem}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e1e4ea;padding:.3rem .5rem;text-align:left;font-size:.9rem;vertical-align:top}
.verdict{padding:.1rem .4rem;border-radius:.3rem;font-size:.8rem;white-space:nowrap}
.v-up-to-date{background:#d9f2df}.v-patch-missing{background:#fff0c2}.v-exposed-past-deadline{background:#ffc9c9}
.v-reboot-required{background:#e8d9ff}.v-offline{background:#ddd}.v-drift{background:#ffd9b3}.v-unknown{background:#eee}
.counts span{margin-right:1rem}form.inline{display:inline}.error{background:#ffe3e3;padding:.5rem;border-left:4px solid #c00}
button{margin-right:.3rem}fieldset{border:1px solid #ccd;margin:.5rem 0}code{font-size:.85rem}`;

export function layout(title: string, user: PageUser | undefined, body: Html): Html {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <title>${title} · rebootless</title>
        <meta name="viewport" content="width=device-width,initial-scale=1" />
        ${user ? html`<meta name="csrf-token" content="${user.csrf}" />` : ''}
        <style>
          ${new Html(STYLE)}
        </style>
      </head>
      <body>
        <header>
          <strong>rebootless</strong> ${
            user
              ? html`<a href="/fleet">Fleet</a><a href="/rollouts">Rollouts</a><a href="/exposure">Exposure</a>
                  <a href="/compliance">Compliance</a><a href="/audit">Audit log</a
                  ><a href="/builds">Builds and patches</a>
                  <span class="who"
                    >${user.subject} (${user.roles.join(', ')})
                    <form class="inline" method="post" action="/signout">
                      <input type="hidden" name="_csrf" value="${user.csrf}" /><button>Sign out</button>
                    </form></span
                  >`
              : ''
          }
        </header>
        <main>
          <h1>${title}</h1>
          ${body}
        </main>
      </body>
    </html>`;
}

export function errorPage(status: number, message: string, user: PageUser | undefined): Html {
  return layout(
    status === 404 ? 'Not found' : status === 403 ? 'Not allowed' : status === 400 ? 'Bad request' : 'Error',
    user,
    html`<p class="error" data-status="${status}">${message}</p>`,
  );
}
