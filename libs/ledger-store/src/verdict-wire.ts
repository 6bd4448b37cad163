import { ledger } from '@rebootless/contracts';
import type { HostVerdict } from '@rebootless/ledger-model';

/** The model's verdicts as the wire's enum: one table, so adding a verdict breaks the build here. */
export const VERDICT_WIRE = {
  'up-to-date': ledger.HostVerdict.HOST_VERDICT_UP_TO_DATE,
  'patch-missing': ledger.HostVerdict.HOST_VERDICT_PATCH_MISSING,
  'exposed-past-deadline': ledger.HostVerdict.HOST_VERDICT_EXPOSED_PAST_DEADLINE,
  'reboot-required': ledger.HostVerdict.HOST_VERDICT_REBOOT_REQUIRED,
  offline: ledger.HostVerdict.HOST_VERDICT_OFFLINE,
  drift: ledger.HostVerdict.HOST_VERDICT_DRIFT,
} as const satisfies Record<HostVerdict, ledger.HostVerdict>;
