// #/config — the running configuration (secrets are never in it) and the config check's verdict.
import { type ConfigView, get } from '../api.ts';
import type { PageContext } from '../app.ts';
import { h, section, verdict } from '../dom.ts';
import { plural } from '../format.ts';

export async function configPage({ view, signal }: PageContext): Promise<void> {
  view.append(h('h1', { tabindex: -1 }, 'Configuration'));
  const { file, effective, check } = await get<ConfigView>('/api/config', signal);
  view.append(
    h('p', null, 'File ', h('code', null, file)),
    section(
      'Check',
      h('p', null, check.ok ? verdict(true, 'The configuration is valid') : verdict(false, `${plural(check.problems.length, 'problem')}`)),
      check.problems.length > 0 ? h('ul', { class: 'problems' }, check.problems.map((p) => h('li', null, p))) : null,
      check.sources.length > 0 ? [h('h3', null, 'Sources'), h('ul', null, check.sources.map((s) => h('li', null, s)))] : null,
    ),
    section('Effective configuration', h('pre', { 'data-testid': 'config-view', class: 'config', tabindex: 0 }, JSON.stringify(effective, null, 2))),
  );
}
