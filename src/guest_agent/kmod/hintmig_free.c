// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * hintmig_free: a snapshot of the buddy allocator's free lists for
 * hintmig-agent, the in-guest half of hintmig's free page hinting.
 *
 * Why a module (docs/agent.md): a FREE hint may name a page only if the
 * page was free at some instant after the host asked (DESIGN.md R3). The
 * free lists are consistent only under zone->lock, and on Debian's kernels
 * no code that already runs under that lock can be reached on demand from
 * BPF (the vmstat walkers are inlined, __free_one_page has no ftrace site,
 * the allocation tracepoints fire for whatever zone the kernel touches
 * next). So this module takes the lock itself, in pieces: at most `piece`
 * list entries per hold, interrupts off only that long, then it unlocks
 * and yields, as mm/vmstat.c and mm/page_reporting.c do.
 *
 * Each record is a block that sat on a free list while we held the lock,
 * after the caller asked: true when reported, whatever happens next. A
 * long list is resumed at a cursor page; if that page is no longer a free
 * block of the same order in the same zone when we come back, the list is
 * read again from its head (duplicates and misses are harmless). A budget
 * per list bounds the work under churn. The module holds no memory of the
 * guest's beyond one record buffer per open file.
 */
#include <linux/fs.h>
#include <linux/ktime.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/nodemask.h>
#include <linux/poison.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmstat.h>

#include "hintmig_free.h"

#define HMF_PIECE_MAX 16384u
/* The number of buddy orders: MAX_ORDER in 6.1, NR_PAGE_ORDERS since 6.8
 * (where MAX_ORDER was renamed and changed meaning); the array says it in
 * every version. */
#define HMF_ORDERS ((u32)ARRAY_SIZE(((struct zone *)NULL)->free_area))

static unsigned int piece = 1024;
module_param(piece, uint, 0644);
MODULE_PARM_DESC(piece, "free-list entries read per zone->lock hold (16..16384, default 1024)");

struct hmf_file {
	struct mutex lock;
	struct hmf_rec *buf;	/* HMF_PIECE_MAX records */
};

static unsigned int hmf_piece(void)
{
	unsigned int p = READ_ONCE(piece);

	return clamp(p, 16u, HMF_PIECE_MAX);
}

/* The buddy order read at cursor index oi: highest order first, so that a
 * caller that stops early has the biggest blocks. */
static unsigned int oi_order(u32 oi)
{
	return HMF_ORDERS - 1 - oi;
}

static bool is_list_head(struct free_area *area, struct list_head *pos)
{
	int mt;

	for (mt = 0; mt < MIGRATE_TYPES; mt++)
		if (pos == &area->free_list[mt])
			return true;
	return false;
}

/* The cursor page, if it is still a free block of this order in this
 * zone (then it is on one of this free_area's lists). Lock held. */
static struct list_head *cursor_entry(struct zone *zone, u64 pfn,
				      unsigned int order)
{
	struct page *page;

	if (pfn > ULONG_MAX || !pfn_valid(pfn) || !zone_spans_pfn(zone, pfn))
		return NULL;
	page = pfn_to_page(pfn);
	if (page_zone(page) != zone || !PageBuddy(page) ||
	    page_private(page) != order)
		return NULL;
	return &page->buddy_list;
}

static void cursor_next_list(struct hmf_walk *w)
{
	w->flags &= ~HMF_WALK_INLIST;
	if (++w->mt == MIGRATE_TYPES) {
		w->mt = 0;
		w->order++;
	}
}

/*
 * One lock hold on zone: read up to `max` records (and at most piece list
 * entries, empty lists counted as one) from the cursor on. Returns the
 * number of records in out.
 */
static u32 walk_piece(struct zone *zone, struct hmf_walk *w,
		      struct hmf_rec *out, u32 max)
{
	u32 visited = 0, n = 0, lim = hmf_piece();
	unsigned long flags;
	u64 t0, dt;

	spin_lock_irqsave(&zone->lock, flags);
	t0 = ktime_get_ns();
	while (w->order < HMF_ORDERS && visited < lim && n < max) {
		unsigned int order = oi_order(w->order);
		struct free_area *area = &zone->free_area[order];
		struct list_head *pos = NULL;

		if (w->flags & HMF_WALK_INLIST) {
			pos = cursor_entry(zone, w->pfn, order);
			if (!pos)
				w->restarts++;
		} else {
			w->budget = (u32)min_t(unsigned long,
					       area->nr_free + lim, U32_MAX);
		}
		if (!pos)
			pos = area->free_list[w->mt].next;
		while (!is_list_head(area, pos) && w->budget &&
		       visited < lim && n < max) {
			struct page *page = list_entry(pos, struct page,
						       buddy_list);

			out[n].pfn = page_to_pfn(page);
			out[n].order = order;
			out[n].reserved = 0;
			n++;
			visited++;
			w->budget--;
			pos = pos->next;
		}
		if (is_list_head(area, pos)) {
			cursor_next_list(w);
			visited++;
		} else if (!w->budget) {
			w->cut++;
			cursor_next_list(w);
		} else {
			/* stopped inside the list: resume at pos */
			w->pfn = page_to_pfn(list_entry(pos, struct page,
							buddy_list));
			w->flags |= HMF_WALK_INLIST;
			break;
		}
	}
	dt = ktime_get_ns() - t0;
	spin_unlock_irqrestore(&zone->lock, flags);
	w->holds++;
	w->hold_ns_total += dt;
	if (dt > w->hold_ns_max)
		w->hold_ns_max = dt;
	return n;
}

/* The zone at the cursor, moving past unpopulated zones and offline
 * nodes; NULL at the end. */
static struct zone *cursor_zone(struct hmf_walk *w)
{
	for (; w->nid < MAX_NUMNODES; w->nid++, w->zid = 0) {
		if (!node_online(w->nid))
			continue;
		for (; w->zid < MAX_NR_ZONES; w->zid++) {
			struct zone *z = &NODE_DATA(w->nid)->node_zones[w->zid];

			if (populated_zone(z))
				return z;
		}
	}
	return NULL;
}

static long hmf_ioc_walk(struct hmf_file *hf, struct hmf_walk __user *uw)
{
	struct hmf_walk w;
	struct hmf_rec __user *ubuf;
	long ret = 0;

	if (copy_from_user(&w, uw, sizeof(w)))
		return -EFAULT;
	if (!w.cap || w.order > HMF_ORDERS || w.mt >= MIGRATE_TYPES ||
	    (w.flags & ~(HMF_WALK_DONE | HMF_WALK_INLIST)))
		return -EINVAL;
	ubuf = u64_to_user_ptr(w.buf);
	w.count = 0;
	w.hold_ns_max = w.hold_ns_total = 0;
	w.holds = w.restarts = w.cut = w.reserved = 0;

	mutex_lock(&hf->lock);
	if (!hf->buf) {
		hf->buf = kvmalloc_array(HMF_PIECE_MAX, sizeof(*hf->buf),
					 GFP_KERNEL);
		if (!hf->buf) {
			ret = -ENOMEM;
			goto out;
		}
	}
	while (!(w.flags & HMF_WALK_DONE) && w.count < w.cap) {
		struct zone *zone = cursor_zone(&w);
		u32 n;

		if (!zone) {
			w.flags |= HMF_WALK_DONE;
			break;
		}
		if (w.order >= HMF_ORDERS) {
			/* this zone is done: the next one, from its top */
			w.zid++;
			w.order = w.mt = 0;
			w.flags &= ~HMF_WALK_INLIST;
			continue;
		}
		n = walk_piece(zone, &w, hf->buf,
			       min_t(u32, w.cap - w.count, HMF_PIECE_MAX));
		if (n && copy_to_user(ubuf + w.count, hf->buf,
				      n * sizeof(*hf->buf))) {
			ret = -EFAULT;
			goto out;
		}
		w.count += n;
		cond_resched();
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			goto out;
		}
	}
	if (copy_to_user(uw, &w, sizeof(w)))
		ret = -EFAULT;
out:
	mutex_unlock(&hf->lock);
	return ret;
}

static long hmf_ioc_info(struct hmf_info __user *ui)
{
	struct hmf_info in;
	int nid, zid, cpu;

	memset(&in, 0, sizeof(in));
	in.version = HMF_VERSION;
	in.page_shift = PAGE_SHIFT;
	in.orders = HMF_ORDERS;
	in.migrate_types = MIGRATE_TYPES;
	in.piece = hmf_piece();
	/* page_poison takes precedence over init_on_free (mm init) */
	if (page_poisoning_enabled_static()) {
		in.poison = HMF_POISON_PAGE_POISON;
		in.poison_byte = PAGE_POISON;
	} else if (want_init_on_free()) {
		in.poison = HMF_POISON_INIT_ON_FREE;
		in.poison_byte = 0;
	}
	in.init_on_alloc = want_init_on_alloc(GFP_KERNEL);
	for_each_online_node(nid) {
		for (zid = 0; zid < MAX_NR_ZONES; zid++) {
			struct zone *z = &NODE_DATA(nid)->node_zones[zid];

			if (!populated_zone(z))
				continue;
			in.free_pages += zone_page_state(z, NR_FREE_PAGES);
			in.managed_pages += zone_managed_pages(z);
			for_each_online_cpu(cpu)
				in.pcp_pages += READ_ONCE(per_cpu_ptr(
					z->per_cpu_pageset, cpu)->count);
		}
	}
	return copy_to_user(ui, &in, sizeof(in)) ? -EFAULT : 0;
}

static long hmf_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case HMF_IOC_INFO:
		return hmf_ioc_info((struct hmf_info __user *)arg);
	case HMF_IOC_WALK:
		return hmf_ioc_walk(f->private_data,
				    (struct hmf_walk __user *)arg);
	}
	return -ENOTTY;
}

static int hmf_open(struct inode *inode, struct file *f)
{
	struct hmf_file *hf;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	hf = kzalloc(sizeof(*hf), GFP_KERNEL);
	if (!hf)
		return -ENOMEM;
	mutex_init(&hf->lock);
	f->private_data = hf;
	return nonseekable_open(inode, f);
}

static int hmf_release(struct inode *inode, struct file *f)
{
	struct hmf_file *hf = f->private_data;

	kvfree(hf->buf);
	kfree(hf);
	return 0;
}

static const struct file_operations hmf_fops = {
	.owner = THIS_MODULE,
	.open = hmf_open,
	.release = hmf_release,
	.unlocked_ioctl = hmf_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	/* no llseek: nonseekable_open makes lseek fail with ESPIPE */
};

static struct miscdevice hmf_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "hintmig_free",
	.fops = &hmf_fops,
	.mode = 0600,
};

static int __init hmf_init(void)
{
	int ret = misc_register(&hmf_dev);

	if (!ret)
		pr_info("hintmig_free: ready, %u entries per zone->lock hold\n",
			hmf_piece());
	return ret;
}

static void __exit hmf_exit(void)
{
	misc_deregister(&hmf_dev);
}

module_init(hmf_init);
module_exit(hmf_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hintmig: snapshot of the buddy free lists for free page hinting");
MODULE_VERSION("0.1.0");
