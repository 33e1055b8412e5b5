// The panel runs in the browser only (a static single-page app with an index.html fallback).
// Before any page shows, this decides where the owner belongs: first-run setup, sign-in, or in.
import { redirect } from '@sveltejs/kit';
import { resolve } from '$app/paths';
import { api, toApiError } from '$lib/api';
import { loginHref, safeNext } from '$lib/session';
import type { Gate } from '$lib/types';
import type { LayoutLoad } from './$types';

export const ssr = false;
export const prerender = false;

export const load: LayoutLoad = async ({ url, route, depends }): Promise<{ gate: Gate }> => {
  depends('app:session');
  const here = route.id;
  const next = safeNext(url.searchParams.get('next'));

  let gate: Gate;
  try {
    const setup = await api.setupState();
    if (setup.needed) {
      gate = { kind: 'setup' };
    } else {
      const session = await api.session();
      gate = session.authenticated ? { kind: 'in', session } : { kind: 'login' };
    }
  } catch (err) {
    const e = toApiError(err);
    return { gate: { kind: 'unreachable', status: e.status, message: e.message, fix: e.fix } };
  }

  if (gate.kind === 'setup' && here !== '/setup') redirect(307, resolve('/setup'));
  if (gate.kind === 'login' && here !== '/login')
    redirect(307, loginHref(url.pathname + url.search));
  if (gate.kind === 'in' && (here === '/login' || here === '/setup')) {
    redirect(307, next ?? resolve('/'));
  }
  return { gate };
};
