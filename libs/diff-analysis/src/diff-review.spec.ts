import { DiffParseError, analyseDiff } from './index';

// Kernel-style diffs as `git diff` (with the kernel's diff=cpp attribute) and `diff -u(p)` print them.
// String.raw keeps the C escapes ("\n") as the diff has them.

const SAFE_CMDLINE_FIX = String.raw`diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c
index 9bb6c01..4d26b9c 100644
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,8 +6,9 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
-	seq_puts(m, saved_command_line);
-	seq_putc(m, '\n');
+	const char *line = saved_command_line ?: "";
+
+	seq_printf(m, "%s\n", line);
 	return 0;
 }
 
`;

describe('analyseDiff', () => {
  describe('given a one-function fix to cmdline_proc_show in fs/proc/cmdline.c', () => {
    it('finds the function from its definition in the context and finds nothing unsafe', () => {
      // When the diff is analysed
      const report = analyseDiff(SAFE_CMDLINE_FIX);
      // Then it names the file and the function, and lets the build go on
      expect(report.verdict).toBe('ok');
      expect(report.files).toEqual(['fs/proc/cmdline.c']);
      expect(report.functions).toEqual([{ file: 'fs/proc/cmdline.c', name: 'cmdline_proc_show', change: 'modified' }]);
      expect(report.findings).toEqual([]);
      expect(report.summary).toContain('cmdline_proc_show()');
      expect(report.summary).toContain('Nothing in it looks unsafe for a live patch');
    });

    it('reads the same fix from a git format-patch mail, ignoring the message and the signature', () => {
      const mail = String.raw`From 5a2e4e02f563d6733b5d31a964ff34761736821e Mon Sep 17 00:00:00 2001
From: t <t@t>
Date: Sun, 22 Nov 2026 07:19:05 +0000
Subject: [PATCH] proc: cmdline: tolerate a missing command line

Do not pass NULL to seq_puts().

Signed-off-by: A Developer <dev@example.org>
---
 fs/proc/cmdline.c | 5 +++--
 1 file changed, 3 insertions(+), 2 deletions(-)

diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c
index 9bb6c01..4d26b9c 100644
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,8 +6,9 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
-	seq_puts(m, saved_command_line);
-	seq_putc(m, '\n');
+	const char *line = saved_command_line ?: "";
+
+	seq_printf(m, "%s\n", line);
 	return 0;
 }
 
-- 
2.39.5

`;
      const report = analyseDiff(mail);
      expect(report.verdict).toBe('ok');
      expect(report.functions).toEqual([{ file: 'fs/proc/cmdline.c', name: 'cmdline_proc_show', change: 'modified' }]);
    });
  });

  describe('given a change deep inside a function whose first line is above the hunk', () => {
    it('takes the function name from the @@ header', () => {
      const report = analyseDiff(String.raw`diff --git a/net/netfilter/nf_tables_api.c b/net/netfilter/nf_tables_api.c
index ff0a1ad..eb73769 100644
--- a/net/netfilter/nf_tables_api.c
+++ b/net/netfilter/nf_tables_api.c
@@ -35,7 +35,7 @@ static int nft_set_elem_check_timeout(const struct nft_set *set, u64 timeout)
 	if (timeout > U64_MAX / NSEC_PER_MSEC)
 		return -ERANGE;
 
-	if (nsecs_to_jiffies64(timeout * NSEC_PER_MSEC) >= MAX_JIFFY_OFFSET)
+	if (nsecs_to_jiffies64(timeout * NSEC_PER_MSEC) >= MAX_JIFFY_OFFSET - 1)
 		return -ERANGE;
 
 	return 0;
`);
      expect(report.verdict).toBe('ok');
      expect(report.functions).toEqual([
        { file: 'net/netfilter/nf_tables_api.c', name: 'nft_set_elem_check_timeout', change: 'modified' },
      ]);
    });

    it('names a syscall by the function that holds its body (diff -up truncates the header)', () => {
      const report = analyseDiff(String.raw`--- linux-6.1.orig/kernel/sys.c	2026-11-22 07:19:05.003732439 +0000
+++ linux-6.1/kernel/sys.c	2026-11-22 07:19:05.003828713 +0000
@@ -26,6 +26,8 @@ SYSCALL_DEFINE3(setpriority, int, which,
 		niceval = MIN_NICE;
 	if (niceval > MAX_NICE)
 		niceval = MAX_NICE;
+	if (who < 0)
+		goto out;
 
 	rcu_read_lock();
 	error = set_prio_for(which, who, niceval);
`);
      expect(report.files).toEqual(['kernel/sys.c']); // linux-6.1.orig/ and linux-6.1/ stripped as patch -p1 would
      expect(report.functions).toEqual([{ file: 'kernel/sys.c', name: '__do_sys_setpriority', change: 'modified' }]);
      expect(report.verdict).toBe('ok');
    });

    it('says so, and which lines, when plain diff -u gives no function name to go by', () => {
      const report = analyseDiff(String.raw`--- linux-6.1.orig/kernel/sys.c	2026-11-22 07:19:04.993010969 +0000
+++ linux-6.1/kernel/sys.c	2026-11-22 07:19:04.993075295 +0000
@@ -26,6 +26,8 @@
 		niceval = MIN_NICE;
 	if (niceval > MAX_NICE)
 		niceval = MAX_NICE;
+	if (who < 0)
+		goto out;
 
 	rcu_read_lock();
 	error = set_prio_for(which, who, niceval);
`);
      expect(report.verdict).toBe('warnings');
      expect(report.functions).toEqual([]);
      expect(report.findings).toEqual([
        expect.objectContaining({ severity: 'warn', rule: 'unknown-context', file: 'kernel/sys.c', line: 29 }),
      ]);
      expect(report.findings[0]!.explanation).toContain('lines 29 and 30');
      expect(report.findings[0]!.explanation).toContain('diff -up');
    });
  });

  describe('given a member added to a struct', () => {
    it('refuses a struct defined in a .c file, naming the struct and the member', () => {
      const report = analyseDiff(String.raw`diff --git a/net/netfilter/nf_tables_api.c b/net/netfilter/nf_tables_api.c
index ff0a1ad..db2f642 100644
--- a/net/netfilter/nf_tables_api.c
+++ b/net/netfilter/nf_tables_api.c
@@ -11,6 +11,7 @@ struct nft_rule_dump_ctx {
 	char *table;
 	char *chain;
 	unsigned int s_idx;
+	unsigned int reset_count;
 	bool reset;
 };
 
`);
      expect(report.verdict).toBe('refused');
      expect(report.findings).toEqual([
        expect.objectContaining({
          severity: 'refuse',
          rule: 'struct-layout',
          file: 'net/netfilter/nf_tables_api.c',
          line: 14,
        }),
      ]);
      expect(report.findings[0]!.explanation).toBe(
        'net/netfilter/nf_tables_api.c changes the layout of struct nft_rule_dump_ctx (member reset_count is added). ' +
          'Code already running and other modules see the old layout, so a live patch cannot change it safely. ' +
          'Ship this fix with a reboot, or keep the existing data as it is and attach the new state with shadow variables (klp_shadow_*).',
      );
      expect(report.summary).toContain('cannot be shipped as a live patch');
      expect(report.summary).toContain('struct nft_rule_dump_ctx');
    });

    it('refuses a struct declared in a header, named by the @@ header, and says why a header is worse', () => {
      const report =
        analyseDiff(String.raw`diff --git a/include/net/netfilter/nf_tables.h b/include/net/netfilter/nf_tables.h
index 6299e8f..495279b 100644
--- a/include/net/netfilter/nf_tables.h
+++ b/include/net/netfilter/nf_tables.h
@@ -30,6 +30,7 @@ struct nft_set {
 	atomic_t			nelems;
 	u64				timeout;
 	u32				gc_int;
+	u32				gc_seq;
 	u16				policy;
 	u16				udlen;
 	unsigned char			*udata;
`);
      expect(report.verdict).toBe('refused');
      expect(report.findings).toEqual([
        expect.objectContaining({ rule: 'struct-layout', file: 'include/net/netfilter/nf_tables.h', line: 33 }),
      ]);
      expect(report.findings[0]!.explanation).toContain('struct nft_set (member gc_seq is added)');
      expect(report.findings[0]!.explanation).toContain('every module built against it');
    });
  });

  describe('given a change to global data', () => {
    it('refuses a new initial value for a file-scope variable', () => {
      const report = analyseDiff(String.raw`diff --git a/net/netfilter/nf_tables_api.c b/net/netfilter/nf_tables_api.c
index ff0a1ad..4c1658d 100644
--- a/net/netfilter/nf_tables_api.c
+++ b/net/netfilter/nf_tables_api.c
@@ -4,7 +4,7 @@
 #include <linux/list.h>
 #include <net/netfilter/nf_tables.h>
 
-static unsigned int nf_tables_gc_interval_ms = 1000;
+static unsigned int nf_tables_gc_interval_ms = 2000;
 static LIST_HEAD(nf_tables_expressions);
 
 struct nft_rule_dump_ctx {
`);
      expect(report.verdict).toBe('refused');
      expect(report.findings).toEqual([
        expect.objectContaining({
          severity: 'refuse',
          rule: 'global-data',
          file: 'net/netfilter/nf_tables_api.c',
          line: 7,
        }),
      ]);
      expect(report.findings[0]!.explanation).toContain('the initial value of the global nf_tables_gc_interval_ms');
      expect(report.findings[0]!.explanation).toContain('the running kernel keeps the old value');
    });

    it('refuses a changed entry in a table initialiser, naming the table', () => {
      const report = analyseDiff(String.raw`diff --git a/net/netfilter/nf_tables_api.c b/net/netfilter/nf_tables_api.c
index ff0a1ad..0efc7ef 100644
--- a/net/netfilter/nf_tables_api.c
+++ b/net/netfilter/nf_tables_api.c
@@ -44,7 +44,7 @@ static int nft_set_elem_check_timeout(const struct nft_set *set, u64 timeout)
 static const struct nla_policy nft_set_policy[NFTA_SET_MAX + 1] = {
 	[NFTA_SET_TABLE]	= { .type = NLA_STRING, .len = NFT_TABLE_MAXNAMELEN - 1 },
 	[NFTA_SET_NAME]		= { .type = NLA_STRING, .len = NFT_SET_MAXNAMELEN - 1 },
-	[NFTA_SET_FLAGS]	= { .type = NLA_U32 },
+	[NFTA_SET_FLAGS]	= NLA_POLICY_MASK(NLA_BE32, NFT_SET_FLAGS_MASK),
 	[NFTA_SET_KEY_TYPE]	= { .type = NLA_U32 },
 	[NFTA_SET_KEY_LEN]	= { .type = NLA_U32 },
 	[NFTA_SET_DATA_TYPE]	= { .type = NLA_U32 },
`);
      expect(report.verdict).toBe('refused');
      expect(report.findings).toEqual([expect.objectContaining({ rule: 'global-data', line: 47 })]);
      expect(report.findings[0]!.explanation).toContain('nft_set_policy');
    });
  });

  describe('given init code', () => {
    it('refuses a change inside an __init function, naming it', () => {
      const report = analyseDiff(String.raw`diff --git a/net/netfilter/nf_tables_api.c b/net/netfilter/nf_tables_api.c
index ff0a1ad..a472f1e 100644
--- a/net/netfilter/nf_tables_api.c
+++ b/net/netfilter/nf_tables_api.c
@@ -67,6 +67,7 @@ static int __init nf_tables_module_init(void)
 		return err;
 
 	err = nft_chain_filter_init();
+	WARN_ON_ONCE(err > 0);
 	if (err < 0)
 		goto err_chain_filter;
 
`);
      expect(report.verdict).toBe('refused');
      expect(report.functions).toEqual([
        { file: 'net/netfilter/nf_tables_api.c', name: 'nf_tables_module_init', change: 'modified' },
      ]);
      expect(report.findings).toEqual([
        expect.objectContaining({
          severity: 'refuse',
          rule: 'init-exit',
          file: 'net/netfilter/nf_tables_api.c',
          line: 70,
        }),
      ]);
      expect(report.findings[0]!.explanation).toContain('nf_tables_module_init(), which is marked __init');
    });

    it('refuses moving a module_init to another initcall level, as one finding', () => {
      const report = analyseDiff(String.raw`diff --git a/net/netfilter/nf_tables_api.c b/net/netfilter/nf_tables_api.c
index ff0a1ad..e1bbfee 100644
--- a/net/netfilter/nf_tables_api.c
+++ b/net/netfilter/nf_tables_api.c
@@ -77,5 +77,5 @@ static int __init nf_tables_module_init(void)
 	return err;
 }
 
-module_init(nf_tables_module_init);
+subsys_initcall(nf_tables_module_init);
 MODULE_LICENSE("GPL");
`);
      expect(report.findings).toEqual([expect.objectContaining({ severity: 'refuse', rule: 'init-exit' })]);
      expect(report.findings[0]!.explanation).toContain(
        'changes module_init(nf_tables_module_init) to subsys_initcall(nf_tables_module_init)',
      );
    });
  });

  describe('given code that is not a patchable C function', () => {
    it('refuses an assembly file', () => {
      const report = analyseDiff(String.raw`diff --git a/arch/x86/entry/entry_64.S b/arch/x86/entry/entry_64.S
index 8523fba..0f9a275 100644
--- a/arch/x86/entry/entry_64.S
+++ b/arch/x86/entry/entry_64.S
@@ -6,6 +6,7 @@ SYM_CODE_START(entry_SYSCALL_64)
 	ENDBR
 
 	swapgs
+	lfence
 	movq	%rsp, PER_CPU_VAR(cpu_tss_rw + TSS_sp2)
 	SWITCH_TO_KERNEL_CR3 scratch_reg=%rsp
 	movq	PER_CPU_VAR(pcpu_hot + X86_top_of_stack), %rsp
`);
      expect(report.verdict).toBe('refused');
      expect(report.findings).toEqual([
        expect.objectContaining({ severity: 'refuse', rule: 'assembly', file: 'arch/x86/entry/entry_64.S' }),
      ]);
      expect(report.findings[0]!.explanation).toContain('arch/x86/entry/entry_64.S is an assembly file');
    });

    it('refuses the vDSO, even in C', () => {
      const report =
        analyseDiff(String.raw`diff --git a/arch/x86/entry/vdso/vclock_gettime.c b/arch/x86/entry/vdso/vclock_gettime.c
index f95f474..63dcd6d 100644
--- a/arch/x86/entry/vdso/vclock_gettime.c
+++ b/arch/x86/entry/vdso/vclock_gettime.c
@@ -4,6 +4,8 @@
 
 int __vdso_clock_gettime(clockid_t clock, struct __kernel_timespec *ts)
 {
+	if (!ts)
+		return -EFAULT;
 	return __cvdso_clock_gettime(clock, ts);
 }
 
`);
      expect(report.verdict).toBe('refused');
      expect(report.findings).toEqual([
        expect.objectContaining({ severity: 'refuse', rule: 'vdso', file: 'arch/x86/entry/vdso/vclock_gettime.c' }),
      ]);
      expect(report.findings[0]!.explanation).toContain('Running processes keep the copy they mapped');
    });

    it('refuses lib/, as klp-build does, even for a plain C function', () => {
      const report = analyseDiff(String.raw`--- a/lib/string.c
+++ b/lib/string.c
@@ -398,6 +398,8 @@ size_t strlen(const char *s)
 {
 	const char *sc;
 
+	if (!s)
+		return 0;
 	for (sc = s; *sc != '\0'; ++sc)
 		/* nothing */;
 	return sc - s;
`);
      expect(report.verdict).toBe('refused');
      expect(report.findings).toEqual([
        expect.objectContaining({ severity: 'refuse', rule: 'library', file: 'lib/string.c' }),
      ]);
      expect(report.findings[0]!.explanation).toContain('klp-build');
    });

    it('refuses a notrace function, which ftrace cannot redirect', () => {
      const report = analyseDiff(String.raw`diff --git a/kernel/sys.c b/kernel/sys.c
index dcf752d..0e5781d 100644
--- a/kernel/sys.c
+++ b/kernel/sys.c
@@ -36,5 +36,5 @@ SYSCALL_DEFINE3(setpriority, int, which, int, who, int, niceval)
 
 notrace u64 sys_clock_snapshot(void)
 {
-	return local_clock();
+	return local_clock() & ~1ULL;
 }
`);
      expect(report.findings).toEqual([
        expect.objectContaining({ severity: 'refuse', rule: 'notrace', file: 'kernel/sys.c' }),
      ]);
      expect(report.findings[0]!.explanation).toContain('sys_clock_snapshot(), which is marked notrace');
    });
  });

  describe('given a header change that every includer recompiles', () => {
    it('warns about a macro, naming it', () => {
      const report = analyseDiff(String.raw`diff --git a/include/linux/netdevice.h b/include/linux/netdevice.h
index 9d7033b..6acfcda 100644
--- a/include/linux/netdevice.h
+++ b/include/linux/netdevice.h
@@ -9,7 +9,7 @@
 #define NET_RX_SUCCESS		0	/* keep 'em coming, baby */
 #define NET_RX_DROP		1	/* packet dropped */
 
-#define MAX_NEST_DEV 8
+#define MAX_NEST_DEV 16
 
 static inline bool dev_xmit_complete(int rc)
 {
`);
      expect(report.verdict).toBe('warnings');
      expect(report.findings).toEqual([
        expect.objectContaining({
          severity: 'warn',
          rule: 'header-ripple',
          file: 'include/linux/netdevice.h',
          line: 12,
        }),
      ]);
      expect(report.findings[0]!.explanation).toContain('macro MAX_NEST_DEV');
      expect(report.summary).toContain('needs a human look');
    });

    it('warns about an inline function, naming it', () => {
      const report =
        analyseDiff(String.raw`diff --git a/include/net/netfilter/nf_tables.h b/include/net/netfilter/nf_tables.h
index 6299e8f..df280e8 100644
--- a/include/net/netfilter/nf_tables.h
+++ b/include/net/netfilter/nf_tables.h
@@ -42,7 +42,7 @@ static inline void *nft_set_priv(const struct nft_set *set)
 
 static inline bool nft_set_is_anonymous(const struct nft_set *set)
 {
-	return set->flags & NFT_SET_ANONYMOUS;
+	return !!(set->flags & NFT_SET_ANONYMOUS);
 }
 
 #endif /* _NET_NF_TABLES_H */
`);
      expect(report.verdict).toBe('warnings');
      expect(report.findings).toEqual([
        expect.objectContaining({ rule: 'header-ripple', file: 'include/net/netfilter/nf_tables.h' }),
      ]);
      expect(report.findings[0]!.explanation).toContain('the inline function nft_set_is_anonymous()');
    });
  });

  describe('given a static variable inside a function', () => {
    it('refuses a new one, naming the variable and the function', () => {
      const report = analyseDiff(String.raw`diff --git a/net/core/dev.c b/net/core/dev.c
index aa87673..6fafb71 100644
--- a/net/core/dev.c
+++ b/net/core/dev.c
@@ -20,8 +20,11 @@ static int netif_rx_internal(struct sk_buff *skb)
 
 static void netdev_warn_dropped(struct net_device *dev, unsigned int count)
 {
+	static unsigned long last_warned;
 	const char *name = netdev_name(dev);
 
-	if (count > 100)
+	if (count > 100 && time_after(jiffies, last_warned + HZ)) {
+		last_warned = jiffies;
 		pr_warn("%s: dropped %u packets\n", name, count);
+	}
 }
`);
      expect(report.verdict).toBe('refused');
      expect(report.findings).toEqual([
        expect.objectContaining({ severity: 'refuse', rule: 'static-local', file: 'net/core/dev.c', line: 23 }),
      ]);
      expect(report.findings[0]!.explanation).toContain(
        'adds the static variable last_warned inside netdev_warn_dropped()',
      );
      expect(report.findings[0]!.explanation).toContain('klp_shadow_get_or_alloc');
    });

    it('accepts a read-only one: there is no state to lose', () => {
      const report = analyseDiff(String.raw`diff --git a/net/core/dev.c b/net/core/dev.c
index aa87673..2c3803f 100644
--- a/net/core/dev.c
+++ b/net/core/dev.c
@@ -20,8 +20,9 @@ static int netif_rx_internal(struct sk_buff *skb)
 
 static void netdev_warn_dropped(struct net_device *dev, unsigned int count)
 {
+	static const char * const levels[] = { "low", "high" };
 	const char *name = netdev_name(dev);
 
 	if (count > 100)
-		pr_warn("%s: dropped %u packets\n", name, count);
+		pr_warn("%s: dropped %u packets (%s)\n", name, count, levels[count > 1000]);
 }
`);
      expect(report.verdict).toBe('ok');
      expect(report.functions).toEqual([{ file: 'net/core/dev.c', name: 'netdev_warn_dropped', change: 'modified' }]);
    });
  });

  describe('given a static function whose signature changes', () => {
    it('warns that every caller must be patched with it', () => {
      const report = analyseDiff(String.raw`diff --git a/net/netfilter/nf_tables_api.c b/net/netfilter/nf_tables_api.c
index ff0a1ad..89ad2e5 100644
--- a/net/netfilter/nf_tables_api.c
+++ b/net/netfilter/nf_tables_api.c
@@ -14,9 +14,10 @@ struct nft_rule_dump_ctx {
 	bool reset;
 };
 
-static void nft_ctx_release(struct nft_rule_dump_ctx *ctx)
+static void nft_ctx_release(struct nft_rule_dump_ctx *ctx, bool chain_only)
 {
-	kfree(ctx->table);
+	if (!chain_only)
+		kfree(ctx->table);
 	kfree(ctx->chain);
 }
 
`);
      expect(report.verdict).toBe('warnings');
      expect(report.findings).toEqual([expect.objectContaining({ severity: 'warn', rule: 'function-signature' })]);
      expect(report.findings[0]!.explanation).toContain('the signature of nft_ctx_release()');
    });
  });

  describe('given several files', () => {
    it('reviews each: a safe fix, a struct change in a header and a new file', () => {
      const report = analyseDiff(String.raw`diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c
index 9bb6c01..4d26b9c 100644
--- a/fs/proc/cmdline.c
+++ b/fs/proc/cmdline.c
@@ -6,8 +6,9 @@
 
 static int cmdline_proc_show(struct seq_file *m, void *v)
 {
-	seq_puts(m, saved_command_line);
-	seq_putc(m, '\n');
+	const char *line = saved_command_line ?: "";
+
+	seq_printf(m, "%s\n", line);
 	return 0;
 }
 
diff --git a/include/net/netfilter/nf_tables.h b/include/net/netfilter/nf_tables.h
index 6299e8f..b267e3b 100644
--- a/include/net/netfilter/nf_tables.h
+++ b/include/net/netfilter/nf_tables.h
@@ -31,7 +31,7 @@ struct nft_set {
 	u64				timeout;
 	u32				gc_int;
 	u16				policy;
-	u16				udlen;
+	u32				udlen;
 	unsigned char			*udata;
 };
 
diff --git a/net/netfilter/nft_set_gc.c b/net/netfilter/nft_set_gc.c
new file mode 100644
index 0000000..fdd36df
--- /dev/null
+++ b/net/netfilter/nft_set_gc.c
@@ -0,0 +1,7 @@
+// SPDX-License-Identifier: GPL-2.0-only
+#include <net/netfilter/nf_tables.h>
+
+bool nft_set_gc_due(const struct nft_set *set, u64 now)
+{
+	return set->gc_int && now >= set->timeout;
+}
`);
      expect(report.files).toEqual([
        'fs/proc/cmdline.c',
        'include/net/netfilter/nf_tables.h',
        'net/netfilter/nft_set_gc.c',
      ]);
      expect(report.functions).toEqual([
        { file: 'fs/proc/cmdline.c', name: 'cmdline_proc_show', change: 'modified' },
        { file: 'net/netfilter/nft_set_gc.c', name: 'nft_set_gc_due', change: 'added' },
      ]);
      expect(report.findings.map((f) => [f.severity, f.rule, f.file])).toEqual([
        ['refuse', 'struct-layout', 'include/net/netfilter/nf_tables.h'],
        ['warn', 'new-file', 'net/netfilter/nft_set_gc.c'],
      ]);
      expect(report.findings[0]!.explanation).toContain('struct nft_set (member udlen changes type or size)');
      expect(report.verdict).toBe('refused');
      expect(report.summary).toContain('3 files');
      expect(report.summary).toContain('There is also 1 warning to read');
    });

    it('refuses a binary file and warns about a rename and a deletion', () => {
      const report = analyseDiff(String.raw`diff --git a/firmware/blob.bin b/firmware/blob.bin
index a2b1602..219bed8 100644
Binary files a/firmware/blob.bin and b/firmware/blob.bin differ
diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline_show.c
similarity index 100%
rename from fs/proc/cmdline.c
rename to fs/proc/cmdline_show.c
diff --git a/net/core/dev.c b/net/core/dev.c
deleted file mode 100644
index aa87673..0000000
--- a/net/core/dev.c
+++ /dev/null
@@ -1,27 +0,0 @@
-// SPDX-License-Identifier: GPL-2.0-or-later
-#include <linux/netdevice.h>
-#include <linux/ratelimit.h>
-
-static int netif_rx_internal(struct sk_buff *skb)
-{
-	int ret;
-
-	net_timestamp_check(READ_ONCE(net_hotdata.tstamp_prequeue), skb);
-
-	trace_netif_rx(skb);
-
-	{
-		unsigned int qtail;
-
-		ret = enqueue_to_backlog(skb, smp_processor_id(), &qtail);
-	}
-	return ret;
-}
-
-static void netdev_warn_dropped(struct net_device *dev, unsigned int count)
-{
-	const char *name = netdev_name(dev);
-
-	if (count > 100)
-		pr_warn("%s: dropped %u packets\n", name, count);
-}
`);
      expect(report.findings.map((f) => [f.severity, f.rule, f.file])).toEqual([
        ['refuse', 'non-c-file', 'firmware/blob.bin'],
        ['warn', 'renamed-file', 'fs/proc/cmdline_show.c'],
        ['warn', 'deleted-file', 'net/core/dev.c'],
      ]);
      expect(report.findings[1]!.explanation).toContain('fs/proc/cmdline.c is renamed to fs/proc/cmdline_show.c');
    });
  });

  describe('given a diff with nothing to patch', () => {
    it('refuses a change to a comment only', () => {
      const report = analyseDiff(String.raw`diff --git a/net/netfilter/nf_tables_api.c b/net/netfilter/nf_tables_api.c
index ff0a1ad..4a4d86a 100644
--- a/net/netfilter/nf_tables_api.c
+++ b/net/netfilter/nf_tables_api.c
@@ -30,7 +30,7 @@ static int nft_set_elem_check_timeout(const struct nft_set *set, u64 timeout)
 
 	/*
 	 * A timeout that overflows jiffies would make the element
-	 * expire immediately; reject it instead.
+	 * expire at once; reject it instead.
 	 */
 	if (timeout > U64_MAX / NSEC_PER_MSEC)
 		return -ERANGE;
`);
      expect(report.verdict).toBe('refused');
      expect(report.functions).toEqual([]);
      expect(report.findings).toEqual([expect.objectContaining({ rule: 'nothing-to-patch' })]);
    });

    it('warns that documentation is left out, and refuses since nothing else is left', () => {
      const report = analyseDiff(
        [
          'diff --git a/Documentation/livepatch/livepatch.rst b/Documentation/livepatch/livepatch.rst',
          '--- a/Documentation/livepatch/livepatch.rst',
          '+++ b/Documentation/livepatch/livepatch.rst',
          '@@ -1,3 +1,3 @@',
          ' =========',
          '-Livepatch',
          '+Live patch',
          ' =========',
          '',
        ].join('\n'),
      );
      expect(report.findings.map((f) => [f.severity, f.rule])).toEqual([
        ['warn', 'non-c-file'],
        ['refuse', 'nothing-to-patch'],
      ]);
    });
  });

  describe('given input that is not a usable diff', () => {
    it('throws DiffParseError rather than reporting on it', () => {
      expect(() => analyseDiff('')).toThrow(DiffParseError);
      expect(() => analyseDiff('please patch my kernel\n')).toThrow(/line 1: this is not a unified diff/);
    });
  });
});
