import { z } from 'zod';
import { adoptionView, DiskError, disksReport } from '../../disk/index.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { route } from '../routes.js';

const notAppliance = () =>
  new ApiError(
    404,
    'not_an_appliance',
    'This daemon manages no data disk: its configuration has no appliance section.',
    'Disks are managed on the appliance image (docs/appliance.md); elsewhere, mount the disk yourself and point the sources at it.',
  );

const asApiError = (err: unknown) =>
  err instanceof DiskError ? new ApiError(err.status, err.code, err.message, err.fix) : err;

export const diskRoutes = (deps: ApiDeps) => [
  route({
    method: 'get',
    path: '/api/disks',
    summary:
      'The data disk (mounted or not) and every disk connected, with what is on it, and the last adoption. Listed by the root disk helper.',
    tag: 'disks',
    auth: true,
    response: disksReport,
    handler: () => {
      if (!deps.disks) throw notAppliance();
      return deps.disks.report();
    },
  }),
  route({
    method: 'post',
    path: '/api/disks/adopt',
    summary:
      'Makes a disk the data disk. With "format": true it is ERASED (one ext4 partition labelled backupd); "confirm" must be its serial exactly as listed (its path if it has none). The root disk helper carries it out; follow it in GET /api/disks.',
    tag: 'disks',
    auth: true,
    status: 202,
    body: z.object({
      disk: z.string().min(1).max(300).describe('The id from GET /api/disks.'),
      confirm: z
        .string()
        .max(300)
        .describe("The disk's serial exactly as listed, or its path if it has no serial."),
      format: z
        .boolean()
        .describe(
          'true: erase and format the disk. false: adopt a disk that already carries a backupd filesystem, without writing it.',
        ),
    }),
    response: z.object({ adoption: adoptionView }),
    handler: ({ body }) => {
      if (!deps.disks) throw notAppliance();
      try {
        return { adoption: deps.disks.adopt(body) };
      } catch (err) {
        throw asApiError(err);
      }
    },
  }),
];
