import type { Connection as Ssh2Connection, Session } from 'ssh2';

/**
 * ssh2 1.17 gives a session channel an object to close only once exec or
 * shell made one; until then its close is ours to do, through ssh2's
 * internals (server.js CHANNEL_CLOSE, utils.js ChannelManager).
 */
interface SessionInternals {
  _ending: boolean;
  _channel: unknown;
  _chanInfo: { incoming: { id: number }; outgoing: { id: number } };
}

interface ConnectionInternals {
  _protocol: { channelClose(recipient: number): void };
  _chanMgr: { remove(id: number): void };
}

/**
 * A session channel that never started a command. walhub closes it after
 * session_start_timeout; the client may close it first. Either way ssh2
 * emits 'close' on the session and stops there: it neither answers the
 * client's CHANNEL_CLOSE, which RFC 4254 5.3 requires, nor frees the
 * channel's slot in its table, where the session would stay, with
 * everything its listeners hold, for the life of the connection.
 */
export class BareSession {
  private closeSent = false;

  constructor(
    private readonly client: Ssh2Connection,
    private readonly session: Session,
  ) {
    session.once('close', () => this.release());
  }

  /** Sends CHANNEL_CLOSE; marking the session ending makes ssh2 refuse any request that comes after. */
  close(): void {
    const session = this.internals();
    if (session._ending) return;
    session._ending = true;
    this.closeSent = true;
    this.connection()._protocol.channelClose(session._chanInfo.outgoing.id);
  }

  private release(): void {
    const session = this.internals();
    // A channel from exec or shell is closed, and freed, by ssh2 itself.
    if (session._channel !== undefined) return;
    const connection = this.connection();
    if (!this.closeSent) connection._protocol.channelClose(session._chanInfo.outgoing.id);
    connection._chanMgr.remove(session._chanInfo.incoming.id);
  }

  private internals(): SessionInternals {
    return this.session as unknown as SessionInternals;
  }

  private connection(): ConnectionInternals {
    return this.client as unknown as ConnectionInternals;
  }
}
