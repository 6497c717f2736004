//! The pooling allocator: one slot per instance that may run at once, each sized for the
//! largest component a toolchain produces, so that a call holding a permit always finds room.

/// What one slot of the instance pool holds. Components built by wit-component link a few core
/// modules (the plugin, shims, an adapter); a componentize-js component links 4 and a
/// componentize-py one 14, so a slot holds 16. Two memories per component cover every
/// toolchain measured here.
pub(super) const CORE_INSTANCES_PER_SLOT: u32 = 16;
pub(super) const MEMORIES_PER_SLOT: u32 = 2;
pub(super) const TABLES_PER_SLOT: u32 = 8;

/// The allocator's settings for `instances` slots of `memory_bytes` each.
pub(super) fn pooling_config(
    instances: u32,
    memory_bytes: usize,
) -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    // Each total is the slots times what one component may use, so a call that holds one
    // of the semaphore's permits always finds room: a plugin can never take what another
    // needs to instantiate. A component that needs more than one slot's share is refused
    // when it loads (`PluginLoadError::TooLargeForPool`).
    pool.total_component_instances(instances)
        .max_core_instances_per_component(CORE_INSTANCES_PER_SLOT)
        .total_core_instances(instances * CORE_INSTANCES_PER_SLOT)
        .max_memories_per_component(MEMORIES_PER_SLOT)
        .total_memories(instances * MEMORIES_PER_SLOT)
        .max_tables_per_component(TABLES_PER_SLOT)
        .total_tables(instances * TABLES_PER_SLOT)
        .total_stacks(instances)
        .max_memory_size(memory_bytes)
        // Resetting a slot by zeroing its first pages, instead of handing them back to the
        // kernel, saves a page fault per touched page on the next instantiation; a Rust
        // plugin touches about a megabyte (its stack and a little heap) per call.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(128 << 10);
    pool
}
