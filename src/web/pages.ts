/** The two HTML documents the dashboard serves; everything else is drawn by /assets/app.js. */

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const HEAD = '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">';

/** The page shell of a signed-in browser. */
export function appPage(): string {
  return `<!doctype html><html lang="en"><head>${HEAD}<title>stackback</title><link rel="stylesheet" href="/assets/app.css"><script type="module" src="/assets/app.js"></script></head><body><div id="app"></div></body></html>\n`;
}

/** The sign-in form (answered with 401 to any page request without a session); `error` after a failed try. */
export function loginPage(error: string | undefined): string {
  const alert = error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '';
  return `<!doctype html><html lang="en"><head>${HEAD}<title>Sign in · stackback</title><link rel="stylesheet" href="/assets/login.css"></head><body><main class="login"><h1>stackback</h1><form method="post" action="/login"><label for="token">Access token</label><input id="token" name="token" type="password" autocomplete="current-password" required autofocus><button type="submit">Sign in</button></form>${alert}<p class="hint">The token is in the file web.token_file names (default /etc/stackback/web.token).</p></main></body></html>\n`;
}
