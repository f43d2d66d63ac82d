/* sq__coro_switch(void **save_sp, void *new_sp) for AAPCS64: x19-x30 and d8-d15 are saved
 * on the current stack, sp goes to *save_sp, and the same frame is restored from new_sp.
 * sq__coro_boot: first "return" of a new coroutine; x19 holds the sq_coro pointer. */
    .section .text.hot.squall,"ax",%progbits
    .globl  sq__coro_switch
    .hidden sq__coro_switch
    .type   sq__coro_switch, %function
sq__coro_switch:
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x2, sp
    str     x2, [x0]
    mov     sp, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
    .size   sq__coro_switch, .-sq__coro_switch

    .globl  sq__coro_boot
    .hidden sq__coro_boot
    .type   sq__coro_boot, %function
sq__coro_boot:
    mov     x0, x19
    mov     x29, xzr
    mov     x30, xzr
    bl      sq__coro_main
    brk     #0
    .size   sq__coro_boot, .-sq__coro_boot

    .section .note.GNU-stack,"",%progbits
