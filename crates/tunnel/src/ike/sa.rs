//! The IKE SA state machine: IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL; fed with `(now, datagram)`, returning datagrams, timers and events.
