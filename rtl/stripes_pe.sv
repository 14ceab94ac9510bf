// Stripes processing element, the dense bit-serial baseline (BBS.md §10.3, paper Table V).
//
// LANES bit-serial multipliers: per cycle every lane ANDs one weight bit of the current
// column with its activation, an adder tree sums the lanes, the sum is negated for the
// two's-complement MSB column, shifted by the column's significance and accumulated.
// Every one of the WBITS columns takes one cycle; nothing is skipped.
module stripes_pe #(
    parameter int LANES = 8,
    parameter int WBITS = 8,
    parameter int ABITS = 8,
    parameter int ACCBITS = 24,
    localparam int COLW = ABITS + $clog2(LANES) + 1,
    localparam int SHW = $clog2(WBITS)
) (
    input  logic                   clk,
    input  logic                   load_acts,
    input  logic [LANES*ABITS-1:0] acts_in,
    input  logic [LANES-1:0]       column,    // weight bits of the current column
    input  logic                   step,
    input  logic                   first,
    input  logic                   last,
    input  logic                   col_msb,
    input  logic [SHW-1:0]         col_shift,
    output logic signed [ACCBITS-1:0] y
);
    logic [LANES*ABITS-1:0] acts;
    logic signed [ACCBITS-1:0] acc, col_term, base;
    logic signed [COLW-1:0] col_sum;

    always_ff @(posedge clk) begin
        if (load_acts) acts <= acts_in;
    end

    // AND lanes + adder tree (a function, so that no always block reads what it writes)
    function automatic logic [COLW-1:0] and_add(input logic [LANES-1:0] bits,
                                                input logic [LANES*ABITS-1:0] a);
        logic signed [COLW-1:0] s;
        s = '0;
        for (int i = 0; i < LANES; i++) begin
            if (bits[i]) s = s + COLW'($signed(a[i*ABITS +: ABITS]));
        end
        and_add = s;
    endfunction

    assign col_sum = and_add(column, acts);

    logic signed [ACCBITS-1:0] col_wide;
    assign col_wide = ACCBITS'(col_sum);
    assign col_term = (col_msb ? -col_wide : col_wide) <<< col_shift;
    assign base = first ? '0 : acc;

    always_ff @(posedge clk) begin
        if (step) begin
            acc <= base + col_term;
            if (last) y <= base + col_term;
        end
    end
endmodule
