import { defineConfig } from 'vitest/config';

// Two tiers (DESIGN.md): unit tests swap the adapters and need nothing running;
// integration tests talk to the real services that scripts/test-services.sh starts
// and to the built daemon (dist/), so `npm run build` comes first.
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 20_000 },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
