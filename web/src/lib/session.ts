// Where the panel sends the owner when they are not (or no longer) signed in.
import { goto } from '$app/navigation';
import { resolve } from '$app/paths';

/** Only a path on this site may be a place to return to after sign-in. */
export function safeNext(next: string | null | undefined): string | null {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) {
    return null;
  }
  return next;
}

/** The sign-in page, remembering `from` so the owner comes back to it afterwards. */
export function loginHref(from?: string): string {
  const login = resolve('/login');
  const next = safeNext(from);
  if (!next || next === resolve('/') || next.startsWith(login)) return login;
  return `${login}?next=${encodeURIComponent(next)}`;
}

/** The session ended (a 401 from the API): go to the sign-in page. */
export function signInAgain(): Promise<void> {
  return goto(loginHref(location.pathname + location.search), {
    replaceState: true,
    invalidateAll: true,
  });
}
