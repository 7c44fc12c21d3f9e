// Package maildomain says which email domains stand for a company.
package maildomain

import (
	"maps"
	"slices"

	"golang.org/x/net/publicsuffix"
)

// freeMail are domains of mailbox providers: many companies' people use
// them, so none stands for a company.
var freeMail = map[string]bool{
	"gmail.com": true, "googlemail.com": true,
	"yahoo.com": true, "yahoo.co.uk": true, "yahoo.fr": true, "yahoo.de": true, "yahoo.es": true, "yahoo.it": true,
	"yahoo.co.jp": true, "yahoo.com.br": true, "yahoo.co.in": true, "ymail.com": true, "rocketmail.com": true,
	"hotmail.com": true, "hotmail.co.uk": true, "hotmail.de": true, "hotmail.fr": true, "hotmail.es": true, "hotmail.it": true,
	"outlook.com": true, "outlook.de": true, "live.com": true, "live.co.uk": true, "live.de": true, "live.fr": true,
	"msn.com": true, "passport.com": true,
	"icloud.com": true, "me.com": true, "mac.com": true, "aol.com": true, "aim.com": true,
	"gmx.de": true, "gmx.net": true, "gmx.com": true, "gmx.at": true, "gmx.ch": true, "web.de": true, "t-online.de": true,
	"freenet.de": true, "arcor.de": true, "posteo.de": true, "mailbox.org": true,
	"proton.me": true, "protonmail.com": true, "pm.me": true, "tutanota.com": true, "tuta.io": true, "fastmail.com": true,
	"zoho.com": true, "mail.com": true, "email.com": true, "hey.com": true,
	"yandex.ru": true, "yandex.com": true, "mail.ru": true, "bk.ru": true, "inbox.ru": true, "list.ru": true, "rambler.ru": true,
	"qq.com": true, "163.com": true, "126.com": true, "sina.com": true, "foxmail.com": true, "naver.com": true, "daum.net": true,
	"orange.fr": true, "wanadoo.fr": true, "free.fr": true, "laposte.net": true, "sfr.fr": true,
	"libero.it": true, "virgilio.it": true, "seznam.cz": true, "wp.pl": true, "o2.pl": true, "interia.pl": true, "onet.pl": true,
	"btinternet.com": true, "sky.com": true, "virginmedia.com": true, "comcast.net": true, "att.net": true, "verizon.net": true,
	"sbcglobal.net": true, "bigpond.com": true, "uol.com.br": true, "bol.com.br": true, "rediffmail.com": true,
}

// Shared says why domain d (lower case, as routing normalizes it) stands
// for no one company, "" when it may: a free mail provider's, or a public
// suffix (co.uk, github.io), holds people of every company. Routing lets
// no account claim it, and the account rollup groups no leads by it.
func Shared(d string) string {
	if freeMail[d] {
		return "is a free mail provider"
	}
	if ps, _ := publicsuffix.PublicSuffix(d); ps == d {
		return "is a public suffix"
	}
	return ""
}

// FreeMail lists the free mail providers' domains Shared knows, sorted;
// the caller must not change it.
func FreeMail() []string { return freeMailList }

// freeMailList is freeMail's keys, sorted once: every account report
// passes it to the database.
var freeMailList = slices.Sorted(maps.Keys(freeMail))
