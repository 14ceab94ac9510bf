// BitVert row control (BBS.md §8, §9.2): holds the stored columns of the current pass,
// decodes the group's 8-bit metadata and steps through the columns.
//
// Metadata byte: [7:6] = r, the redundant (sign-extension) columns the group drops;
// [5:0] = the BBS constant field. The group stores ncols columns, MSB plane first; the
// first stored column is plane r, whose significance is 2**(WBITS-1-r), and each later
// column halves it. The constant is the rounded-average pattern of the free low columns
// (unsigned) or, for zero-point shifting, the offset c (signed) that the hardware
// subtracts: its term is -c * sum(A). A group without metadata (sensitive channel or
// plain layer) stores the top ncols planes of a ncols-bit two's-complement number and
// has no constant.
//
// A pass takes max(ncols, 6/CDIGIT) cycles: one per stored column, and the constant's
// digits (CDIGIT bits per cycle) overlap the columns. A new pass can be accepted on the
// last cycle of the previous one, so passes stream back to back.
module bv_control #(
    parameter int W = 16,
    parameter int WBITS = 8,
    parameter int CDIGIT = 3,
    localparam int NCW = $clog2(WBITS + 1),
    localparam int SHW = $clog2(WBITS),
    localparam int DIGW = CDIGIT + 1,
    localparam int NDIG = 6 / CDIGIT,
    localparam int DSHW = $clog2(6)
) (
    input  logic                   clk,
    input  logic                   rst_n,
    input  logic                   start,      // a pass is offered (taken when ready)
    input  logic [WBITS*W-1:0]     cols,       // stored column j at [j*W +: W], j = 0 the MSB column
    input  logic [NCW-1:0]         ncols,      // stored columns, 1..WBITS
    input  logic [7:0]             meta,
    input  logic                   has_meta,
    input  logic                   zero_point, // 1: zero-point constant, 0: rounded-average pattern
    output logic                   ready,
    output logic                   load,       // the offered pass is taken this cycle
    output logic [W-1:0]           column,     // column bits of the current cycle
    output logic                   step,
    output logic                   first,
    output logic                   last,
    output logic                   col_en,
    output logic                   col_msb,
    output logic [SHW-1:0]         col_shift,
    output logic signed [DIGW-1:0] digit,
    output logic [DSHW-1:0]        digit_shift,
    output logic                   done        // y of the PE is valid (one cycle)
);
    logic busy;
    logic [WBITS*W-1:0] colreg;      // shift-register file: the head is the current column
    logic [NCW-1:0] n_col, n_cyc, cnt;
    logic [SHW-1:0] shift;
    logic [5:0] field;
    logic zp, hm;

    assign step = busy;
    assign last = busy && (cnt == n_cyc - NCW'(1));
    assign ready = !busy || last;
    assign load = start && ready;
    assign first = busy && cnt == '0;
    assign column = colreg[W-1:0];
    assign col_en = busy && cnt < n_col;
    assign col_msb = first;
    assign col_shift = shift;

    // pass set-up decoded from the offered metadata
    logic [SHW-1:0] shift0;
    logic [NCW-1:0] cycles0;
    always_comb begin
        shift0 = has_meta ? SHW'(WBITS - 1) - SHW'(meta[7:6]) : SHW'(ncols - NCW'(1));
        cycles0 = ncols > NCW'(NDIG) ? ncols : NCW'(NDIG);
    end

    // constant digit of this cycle: digit i holds field bits [i*CDIGIT +: CDIGIT]; the top
    // digit is signed for zero-point offsets; the zero-point term is negated
    function automatic logic [DIGW+DSHW-1:0] constant_digit(input logic [NCW-1:0] c, input logic [5:0] f,
                                                          input logic signed_top);
        logic signed [DIGW-1:0] raw;
        logic [DSHW-1:0] sh;
        raw = '0;
        sh = '0;
        for (int i = 0; i < NDIG; i++) begin
            if (c == NCW'(i)) begin
                raw = $signed({(signed_top && i == NDIG - 1) ? f[i*CDIGIT+CDIGIT-1] : 1'b0,
                               f[i*CDIGIT +: CDIGIT]});
                sh = DSHW'(i * CDIGIT);
            end
        end
        constant_digit = {signed_top ? -raw : raw, sh};
    endfunction

    logic [DIGW+DSHW-1:0] dig;
    assign dig = constant_digit(cnt, (hm && busy) ? field : 6'd0, zp);
    assign digit = $signed(dig[DSHW +: DIGW]);
    assign digit_shift = dig[DSHW-1:0];

    always_ff @(posedge clk or negedge rst_n) begin
        if (!rst_n) begin
            busy <= 1'b0;
            done <= 1'b0;
            cnt <= '0;
            n_col <= '0;
            n_cyc <= '0;
            shift <= '0;
            field <= '0;
            zp <= 1'b0;
            hm <= 1'b0;
            colreg <= '0;
        end else begin
            done <= last;
            if (load) begin
                busy <= 1'b1;
                cnt <= '0;
                n_col <= ncols;
                n_cyc <= cycles0;
                shift <= shift0;
                field <= has_meta ? meta[5:0] : 6'd0;
                zp <= zero_point;
                hm <= has_meta;
                colreg <= cols;
            end else if (busy) begin
                busy <= !last;
                cnt <= cnt + NCW'(1);
                shift <= shift - SHW'(1);
                colreg <= colreg >> W;
            end
        end
    end
endmodule
