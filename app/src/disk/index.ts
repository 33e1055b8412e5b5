/**
 * The data disk of the appliance: listing the disks (lsblk), the mount probe, the adoption
 * requests and results exchanged with the root helper, and the helper itself (scan, adopt).
 */
export {
  buildInventory,
  diskId,
  diskView,
  parseLsblk,
  LsblkError,
  type DiskView,
  type LsblkDevice,
} from './inventory.js';
export { checkAdoption, confirmationOf, DiskError, type AdoptAsk } from './checks.js';
export { backingDevicePresent, isMountPoint, mountProbe, type MountProbe } from './probe.js';
export {
  adoptRequest,
  adoptionView,
  dataDiskView,
  disksFile,
  pendingRequests,
  readAdoption,
  readDisksFile,
  spoolPaths,
  writeRequest,
  type AdoptRequest,
  type AdoptionView,
  type DisksFile,
} from './spool.js';
export {
  adopt,
  adoptPending,
  DEFAULT_UUID_FILE,
  readUuidFile,
  scan,
  type DiskSystem,
  type HelperOptions,
} from './helper.js';
export { DiskService, disksReport, type DisksReport } from './service.js';
