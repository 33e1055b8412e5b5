/**
 * What goes wrong while signing in to Google, said for the owner: a stable code, what happened,
 * and what to do. The API answers these as `{ error: { code, message, fix } }`.
 */
export class GoogleSignInError extends Error {
  override name = 'GoogleSignInError';
  constructor(
    /** HTTP status the API answers with. */
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** Google's OAuth error body (`{ error, error_description }`) out of a gaxios error, if any. */
export function oauthErrorOf(err: unknown): { error: string; description: string } | undefined {
  const data = (err as { response?: { data?: unknown } } | undefined)?.response?.data;
  if (data && typeof data === 'object' && typeof (data as { error?: unknown }).error === 'string') {
    const d = data as { error: string; error_description?: unknown };
    return {
      error: d.error,
      description: typeof d.error_description === 'string' ? d.error_description : '',
    };
  }
  return undefined;
}
