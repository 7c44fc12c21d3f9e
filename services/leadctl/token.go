package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/leadflow/leadflow/pkg/auth"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
	// Linked for their scopes, which token issue checks names against.
	_ "github.com/leadflow/leadflow/pkg/gen/leadflow/projector/v1"
	_ "github.com/leadflow/leadflow/pkg/gen/leadflow/qualification/v1"
)

func tokenCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "API tokens: make a signing key, issue a token with scopes, revoke tokens"}
	cmd.AddCommand(&cobra.Command{
		Use:   "keygen",
		Short: "Print a new signing key (keep it secret) and its public key (the services' LEADFLOW_AUTH_KEYS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"signing_key": hex.EncodeToString(priv.Seed()), "public_key": hex.EncodeToString(pub)})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "LEADFLOW_AUTH_SIGNING_KEY=%s\nLEADFLOW_AUTH_KEYS=%s\n", hex.EncodeToString(priv.Seed()), hex.EncodeToString(pub))
			return err
		},
	})
	var (
		sub, team, kind, key string
		scopes               []string
		ttl                  time.Duration
	)
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Print a token for --sub granting --scope (repeat it, or * for all), signed with $LEADFLOW_AUTH_SIGNING_KEY",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw := cmp.Or(key, os.Getenv("LEADFLOW_AUTH_SIGNING_KEY")) // not a flag default: --help would print it
			if raw == "" {
				return fmt.Errorf("%w: no signing key: set --signing-key or $LEADFLOW_AUTH_SIGNING_KEY (make run keeps it in .data/keys.env: export $(grep SIGNING .data/keys.env))", errUsage)
			}
			signer, err := auth.ParsePrivateKey(raw)
			if err != nil {
				return fmt.Errorf("%w: --signing-key: %w", errUsage, err)
			}
			// Space-separated too, as a token's own scope claim is.
			var split []string
			for _, s := range scopes {
				split = append(split, strings.Fields(s)...)
			}
			scopes = split
			known := auth.KnownScopes()
			for _, s := range scopes {
				if s != auth.AllScopes && !slices.Contains(known, s) {
					return fmt.Errorf("%w: --scope %q is none of %s", errUsage, s, strings.Join(known, ", "))
				}
			}
			p := auth.Principal{Subject: sub, Scopes: scopes}
			t, ok := eventv1.Team_value["TEAM_"+strings.ToUpper(team)]
			k, ok2 := eventv1.ActorKind_value["ACTOR_KIND_"+strings.ToUpper(kind)]
			if !ok || !ok2 || t == int32(eventv1.Team_TEAM_UNSPECIFIED) || k == int32(eventv1.ActorKind_ACTOR_KIND_UNSPECIFIED) {
				return fmt.Errorf("%w: --team is marketing, sales or operations; --kind user, integration or service", errUsage)
			}
			p.Team, p.Kind = eventv1.Team(t), eventv1.ActorKind(k)
			tok, err := auth.Issue(signer, p, ttl)
			if err != nil {
				return fmt.Errorf("%w: %w", errUsage, err)
			}
			var tokenID string
			if v, err := auth.NewVerifier(signer.Public().(ed25519.PublicKey)); err == nil {
				if p, err := v.Verify(tok); err == nil {
					tokenID = p.ID
				}
			}
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"token": tok, "id": tokenID})
			}
			if _, err := fmt.Fprintln(cmd.OutOrStdout(), tok); err != nil {
				return err
			}
			// Its id, for revoking it alone, where it stays out of a
			// captured $(leadctl token issue ...).
			if tokenID != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "token id %s (leadctl token revoke --id %s)\n", tokenID, tokenID)
			}
			return nil
		},
	}
	f := issue.Flags()
	f.StringVar(&sub, "sub", "", "who the token is for: a user id or an integration's name")
	f.StringSliceVar(&scopes, "scope", nil, "a scope the token grants (repeat it, or separate them by spaces or commas); * grants all")
	f.StringVar(&team, "team", "operations", "marketing, sales or operations")
	f.StringVar(&kind, "kind", "user", "user, integration or service")
	f.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid (at most 8784h, 366 days)")
	f.StringVar(&key, "signing-key", "", "64 hex chars ($LEADFLOW_AUTH_SIGNING_KEY; leadctl token keygen makes one)")
	cmd.AddCommand(issue)
	var id, subject string
	revoke := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke one token (--id, printed when it was issued) or every token of --sub issued up to now and in the 30 s after (issuers' clocks may run ahead); every service refuses them within a moment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (id == "") == (subject == "") {
				return fmt.Errorf("%w: name a token with --id or a caller with --sub", errUsage)
			}
			if id != "" {
				// A typo would be stored and reported revoked, revoking
				// nothing; the id is looked up as issue prints it.
				u, err := uuid.Parse(id)
				if err != nil {
					return fmt.Errorf("%w: --id %q is not a token id (a UUID, printed when the token was issued)", errUsage, id)
				}
				id = u.String()
			}
			if err := o.withJS(cmd.Context(), func(ctx context.Context, js jetstream.JetStream) error {
				return auth.Revoke(ctx, js, id, subject)
			}); err != nil {
				return err
			}
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"revoked_id": id, "revoked_sub": subject})
			}
			what := "token " + id
			if id == "" {
				what = "every token of " + subject + " issued up to now and in the next 30 s"
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", what)
			return err
		},
	}
	revoke.Flags().StringVar(&id, "id", "", "the token's id (its jti)")
	revoke.Flags().StringVar(&subject, "sub", "", "a caller: every token issued to it up to now")
	cmd.AddCommand(revoke)
	return cmd
}
