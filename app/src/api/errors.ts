/** Errors the API answers with: `{ "error": { "code", "message", "fix" } }`, always. */
import { z } from 'zod';

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fix?: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export const errorBody = z
  .object({
    error: z.object({
      code: z.string().describe('Stable machine-readable code.'),
      message: z.string().describe('What is wrong, for a person.'),
      fix: z.string().optional().describe('What to do about it.'),
      details: z.unknown().optional(),
    }),
  })
  .meta({ id: 'Error' });
