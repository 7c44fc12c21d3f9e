package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// readModelDatabase makes sure the read models' database exists on the
// local PostgreSQL ($LEADFLOW_POSTGRES_ADMIN_URL, by default the machine's
// trust-auth server) and returns its URL. With a fresh stream it starts the
// database afresh too: read models checkpointed past the new stream's end
// would skip its first events.
func readModelDatabase(ctx context.Context, fresh bool) (string, error) {
	admin := os.Getenv("LEADFLOW_POSTGRES_ADMIN_URL")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("connect to %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	defer conn.Close(context.Background())
	if fresh {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS leadflow WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("drop the old read models: %w", err)
		}
	}
	var pgErr *pgconn.PgError
	if _, err := conn.Exec(ctx, "CREATE DATABASE leadflow"); err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") {
		return "", fmt.Errorf("create database leadflow: %w", err)
	}
	return fmt.Sprintf("postgres://%s@%s:%d/leadflow?sslmode=disable", cfg.User, cfg.Host, cfg.Port), nil
}
