//! Table definitions for diesel, matching `migrations/` (kept in the `diesel print-schema` shape).

diesel::table! {
    ai_requests (id) {
        id -> Uuid,
        session_id -> Uuid,
        reply_to -> Uuid,
        asked_by -> Nullable<Uuid>,
        node_id -> Uuid,
        created_at -> Timestamptz,
        claimed_at -> Timestamptz,
        attempts -> Int4,
    }
}

diesel::table! {
    ai_usage (workspace_id, user_id, model, day) {
        workspace_id -> Uuid,
        user_id -> Uuid,
        model -> Text,
        day -> Date,
        requests -> Int4,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        name -> Text,
        token_hash -> Bytea,
        permissions -> Array<Text>,
        created_by -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    artifact_snapshots (artifact_id) {
        artifact_id -> Uuid,
        upto_seq -> Int8,
        state -> Bytea,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    artifact_tokens (token_hash) {
        token_hash -> Bytea,
        artifact_id -> Uuid,
        user_id -> Uuid,
        access -> Text,
        expires_at -> Timestamptz,
        id -> Uuid,
        login_session_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    artifact_versions (id) {
        id -> Uuid,
        artifact_id -> Uuid,
        number -> Int4,
        kind -> Text,
        name -> Text,
        message -> Text,
        author_id -> Nullable<Uuid>,
        parent_id -> Nullable<Uuid>,
        state -> Bytea,
        content -> Text,
        upto_seq -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    artifacts (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        session_id -> Nullable<Uuid>,
        message_id -> Nullable<Uuid>,
        kind -> Text,
        title -> Text,
        created_by -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        branch_of -> Nullable<Uuid>,
        fork_version_id -> Nullable<Uuid>,
        branch_name -> Nullable<Text>,
        merged_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        workspace_id -> Nullable<Uuid>,
        actor_user_id -> Nullable<Uuid>,
        actor_token_id -> Nullable<Uuid>,
        action -> Text,
        target_type -> Text,
        target_id -> Text,
        details -> Jsonb,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    email_outbox (id) {
        id -> Uuid,
        to_address -> Text,
        subject -> Text,
        body -> Text,
        created_at -> Timestamptz,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    generations (message_id) {
        message_id -> Uuid,
        session_id -> Uuid,
        reply_to -> Nullable<Uuid>,
        asked_by -> Nullable<Uuid>,
        node_id -> Uuid,
        model -> Text,
        status -> Text,
        partial -> Text,
        stop_requested -> Bool,
        error -> Nullable<Text>,
        prompt_tokens -> Nullable<Int4>,
        completion_tokens -> Nullable<Int4>,
        started_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    invitations (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        email -> Text,
        role -> Text,
        permissions -> Array<Text>,
        token_hash -> Bytea,
        invited_by -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        accepted_by -> Nullable<Uuid>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    user_sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    workspace_members (workspace_id, user_id) {
        workspace_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        granted -> Array<Text>,
        revoked -> Array<Text>,
        joined_at -> Timestamptz,
    }
}

diesel::table! {
    workspaces (id) {
        id -> Uuid,
        name -> Text,
        created_by -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    auth_limits (scope, key) {
        scope -> Text,
        key -> Bytea,
        hits -> Int4,
        window_ends -> Timestamptz,
        blocked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    chat_sessions (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        title -> Text,
        visibility -> Text,
        default_model -> Nullable<Text>,
        created_by -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        archived_at -> Nullable<Timestamptz>,
        ai_mode -> Text,
    }
}

diesel::table! {
    connect_tickets (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        login_session_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    events (topic, seq) {
        topic -> Text,
        seq -> Int8,
        kind -> Text,
        data -> Jsonb,
        actor_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    message_reactions (message_id, user_id, emoji) {
        message_id -> Uuid,
        user_id -> Uuid,
        emoji -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        session_id -> Uuid,
        seq -> Int8,
        author_id -> Nullable<Uuid>,
        role -> Text,
        body -> Text,
        created_at -> Timestamptz,
        edited_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        model -> Nullable<Text>,
        status -> Text,
    }
}

diesel::table! {
    model_proposal_votes (proposal_id, user_id) {
        proposal_id -> Uuid,
        user_id -> Uuid,
        vote -> Text,
        comment -> Nullable<Text>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    model_proposals (id) {
        id -> Uuid,
        session_id -> Uuid,
        proposed_by -> Nullable<Uuid>,
        model -> Text,
        reasoning -> Text,
        status -> Text,
        eligible -> Array<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
        resolved_by -> Nullable<Uuid>,
        owner_node -> Uuid,
    }
}

diesel::table! {
    nodes (id) {
        id -> Uuid,
        address -> Text,
        started_at -> Timestamptz,
        heartbeat_at -> Timestamptz,
        lease_expires_at -> Timestamptz,
        connections -> Int4,
    }
}

diesel::table! {
    presence (session_id, user_id, node_id) {
        session_id -> Uuid,
        user_id -> Uuid,
        node_id -> Uuid,
        display_name -> Text,
        status -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    session_participants (session_id, user_id) {
        session_id -> Uuid,
        user_id -> Uuid,
        role_override -> Nullable<Text>,
        added_by -> Nullable<Uuid>,
        added_at -> Timestamptz,
    }
}

diesel::table! {
    topics (topic) {
        topic -> Text,
        last_seq -> Int8,
    }
}

diesel::joinable!(ai_requests -> chat_sessions (session_id));
diesel::joinable!(api_tokens -> workspaces (workspace_id));
diesel::joinable!(artifact_snapshots -> artifacts (artifact_id));
diesel::joinable!(artifact_tokens -> artifacts (artifact_id));
diesel::joinable!(artifacts -> workspaces (workspace_id));
diesel::joinable!(artifact_versions -> artifacts (artifact_id));
diesel::joinable!(chat_sessions -> workspaces (workspace_id));
diesel::joinable!(message_reactions -> messages (message_id));
diesel::joinable!(model_proposal_votes -> model_proposals (proposal_id));
diesel::joinable!(model_proposals -> chat_sessions (session_id));
diesel::joinable!(messages -> chat_sessions (session_id));
diesel::joinable!(session_participants -> chat_sessions (session_id));
diesel::joinable!(session_participants -> users (user_id));
diesel::joinable!(invitations -> workspaces (workspace_id));
diesel::joinable!(user_sessions -> users (user_id));
diesel::joinable!(workspace_members -> users (user_id));
diesel::joinable!(workspace_members -> workspaces (workspace_id));

diesel::allow_tables_to_appear_in_same_query!(
    ai_requests,
    ai_usage,
    generations,
    api_tokens,
    artifact_snapshots,
    artifact_tokens,
    artifact_versions,
    artifacts,
    audit_log,
    auth_limits,
    chat_sessions,
    connect_tickets,
    events,
    message_reactions,
    messages,
    model_proposal_votes,
    model_proposals,
    nodes,
    presence,
    session_participants,
    topics,
    email_outbox,
    invitations,
    user_sessions,
    users,
    workspace_members,
    workspaces,
);
