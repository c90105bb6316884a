// What an archive-recovery test starts from: a primary archiving through a
// real Barman, walhub serving that archive, and a restore key set up as the
// postgres user would have it. Restored clusters come from createRecoveryCluster.
import { createBarman, type Barman, type BarmanCompression } from './barman.js';
import { startHub, type Hub } from './hub.js';
import { createCluster, createStandby, type PgCluster } from './postgres.js';
import { createFillTable, dropPrimaryConninfo, toPrimarySettings, waitForReplay, writeAndSwitch } from './replication.js';
import { createStandbyAccess, toRestoreCommand, type StandbyAccess } from './restore-command.js';
import { createClientKey } from './ssh-client.js';

export interface RecoverySetup {
  readonly barman: Barman;
  readonly primary: PgCluster;
  readonly hub: Hub;
  /** For key `restore-a`, allowed `servers="pg1"`. */
  readonly access: StandbyAccess;
  cleanup(): Promise<void>;
}

/** Server pg1, compressed as Barman is told; the primary has a `fill` table with some rows archived. */
export async function createRecoverySetup(compression: BarmanCompression): Promise<RecoverySetup> {
  const started: { barman?: Barman; primary?: PgCluster; hub?: Hub; access?: StandbyAccess } = {};
  const cleanup = async () => {
    await started.primary?.cleanup();
    await started.access?.cleanup();
    await started.hub?.stop();
    await started.barman?.cleanup();
  };
  try {
    const barman = (started.barman = await createBarman({ pg1: compression }));
    const primary = (started.primary = await createCluster({ conf: toPrimarySettings(barman.toArchiveCommand('pg1')) }));
    await primary.start();
    await createFillTable(primary);
    await writeAndSwitch(primary, 1000);
    const hub = (started.hub = await startHub({ archive: barman.home }));
    const key = await createClientKey(hub.dir, 'restore-a');
    await hub.loadKeys([{ key, options: 'servers="pg1"' }]);
    const access = (started.access = await createStandbyAccess(hub, key));
    return { barman, primary, hub, access, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * A standby from `primary`'s base backup whose only source is the README's
 * recommended restore_command (no primary_conninfo), started and caught up
 * with one archived segment: what the walhub-down and HAProxy tests replay on.
 */
export async function startArchiveOnlyStandby(primary: PgCluster, barman: Barman, access: StandbyAccess): Promise<PgCluster> {
  const standby = await createStandby(primary, {
    conf: { restore_command: toRestoreCommand(access, 'pg1', 'recommended'), archive_mode: false },
  });
  // standby.signal (from pg_basebackup -R) stays; without primary_conninfo, restore_command is its only source.
  await dropPrimaryConninfo(standby);
  try {
    await standby.start();
    const caughtUp = await writeAndSwitch(primary, 1000);
    await barman.archive(primary, 'pg1', [caughtUp.segment]);
    await waitForReplay(standby, caughtUp.lsn);
    return standby;
  } catch (error) {
    await standby.cleanup();
    throw error;
  }
}
