package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// readModelDatabase makes sure the read models' database exists on the
// local PostgreSQL ($LEADFLOW_POSTGRES_ADMIN_URL, by default the machine's
// trust-auth server) and returns its URL. With a fresh stream it starts the
// database afresh too: read models checkpointed past the new stream's end
// would skip its first events.
func readModelDatabase(ctx context.Context, fresh bool, name string) (string, error) {
	admin := os.Getenv("LEADFLOW_POSTGRES_ADMIN_URL")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	dsn, err := databaseURL(admin, name)
	if err != nil {
		return "", err
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
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("drop the old read models: %w", err)
		}
	}
	var pgErr *pgconn.PgError
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return dsn, nil
}

// databaseURL is the admin URL with only its database replaced: its
// user:password, host:port (an IPv6 one, or a socket's in ?host=) and
// options are the projector's too.
func databaseURL(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// A key=value DSN: rebuild it as a URL from what pgx reads of it.
		cfg, perr := pgx.ParseConfig(admin)
		if perr != nil {
			return "", errors.New("LEADFLOW_POSTGRES_ADMIN_URL must be a postgres:// URL or a key=value DSN")
		}
		u = &url.URL{Scheme: "postgres", User: url.UserPassword(cfg.User, cfg.Password),
			Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))}
		if strings.HasPrefix(cfg.Host, "/") { // a socket directory
			u.Host, u.RawQuery = "", url.Values{"host": {cfg.Host}, "port": {strconv.Itoa(int(cfg.Port))}}.Encode()
		}
	}
	u.Path, u.RawPath = "/"+name, ""
	return u.String(), nil
}
